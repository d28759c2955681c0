# What it takes to use this workflow as a Snakemake module (`module fmrirecon: snakefile: ...` in
# another Snakefile, or `snakedeploy deploy-workflow`): find the repository's files on disk.
# Included first by the Snakefile, before the fmrirecon package can be imported.
import io
import os
import shutil
import tarfile
import tempfile


def repository_on_disk(basedir):
    """The folder ``basedir`` (the Snakefile's ``workflow.current_basedir``: the repository root)
    on disk.

    Not workflow.basedir: when another Snakefile uses the Snakefile as a module (`module fmrirecon:
    snakefile: ...`), that is the user's folder. Snakemake reads a github(...)/gitlab(...) module
    file by file from a bare clone in its source cache, but the fmrirecon package must be
    importable here and in every job's script: extract workflow/ and config/ at the module's tag
    once, next to that clone, and hand it to the jobs through PYTHONPATH.
    """
    if not hasattr(basedir, "hosted_repo"):  # a local path (the usual `snakemake` call)
        return str(basedir)
    try:
        dest = basedir.cache_path / "fmrirecon-checkout" / basedir.repo / basedir.ref
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix="extract.", dir=dest.parent)
            tar = basedir.hosted_repo.repo.git.archive(
                basedir.ref, "workflow", "config", stdout_as_string=False
            )
            with tarfile.open(fileobj=io.BytesIO(tar)) as fh:
                fh.extractall(tmp, filter="data")
            try:
                os.rename(tmp, dest)  # atomic: a concurrent parse may have won the race
            except OSError:
                shutil.rmtree(tmp)
    except Exception as exc:
        raise WorkflowError(
            f"fmrirecon as a module from {basedir}: cannot extract the workflow's "
            f"package ({exc}); clone the repository at that tag and give its Snakefile as "
            "a local path instead"
        ) from None
    package = str(dest / "workflow")
    if package not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        os.environ.update(
            PYTHONPATH=os.pathsep.join(
                p for p in (package, os.environ.get("PYTHONPATH")) if p
            )
        )
    return str(dest)
