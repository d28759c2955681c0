"""Rule ``train_latent_regressor``: paper 003's regressors from fMRI to the image latent ``z`` and the
caption tokens ``c`` (:mod:`fmrirecon.models.latentreg`, ridge as Takagi & Nishimoto).

- **Targets**: ``z`` = the first stage's scaled posterior mean of each training image (the frozen
  generator's ``vae/``), ``c`` = its captions' mean token embedding (rule ``caption_tokens``).
- **Inputs**: the voxels of ``z_rois`` (for ``z``) and ``c_rois`` (for ``c``) of the unit; single
  training trials, the test patterns averaged over repeats. As their code, each set is standardised
  with one scalar mean and sd of its own (the training trials', the test patterns').
- **Selection** (``selection: validation``, default): ``validation_fraction`` of the training
  images are held out with all their trials; each network trains with Adam on MSE (the "VAE" on its
  two MSEs) for at most ``train.<kind>.epochs`` epochs, stops after ``patience`` epochs without a
  lower validation MSE of the latent, and keeps the best epoch's weights. ``selection: test`` is
  the paper's code: no held-out images, the test set's MSE picks the epoch — transductive (the test
  *images'* latents choose the model), written into ``predictions.h5`` and ``recon.h5`` and marked
  ``transductive = 2`` in ``metrics.csv``. Ridge chooses its penalty on a fifth of its training
  samples either way.

One job per branch (``z`` or ``c``) and unit, shared by every method with the same branch
settings. Writes the weights (``model``; ridge as its primal weights), the test predictions
(``…-predictions.h5``: ``pred``, the true ``true``, the training images' mean ``train_mean``, for
Table 3 and the reconstruction), the loss log (with ``val_mse``) and the training summary.
"""

from __future__ import annotations

import json
import logging
import os
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from ...data import prepared
from ...data.atomic import atomic_path, write_json
from ...errors import InputError
from ...models import latentreg as nets
from ...models.graph import functional_graph, node_features, roi_nodes, scaled_laplacian
from ...models.ridge import RidgeDecoder
from ...train.device import select_device
from ...train.files import save_model
from ...train.loop import Trainer
from ...train.records import write_loss_log
from ..common import fingerprint
from .generator import first_stage_latents
from .text import read_tokens

log = logging.getLogger(__name__)

SELECTION_NOTE = {
    "validation": "early stopping and checkpoint choice on a validation split of the training images",
    "test": "TRANSDUCTIVE: early stopping and checkpoint choice on the test set (the paper's code)",
}


def roi_columns(d, rois: list[str], path: str, key: str) -> np.ndarray:
    """Voxel columns of the union of ``rois`` (all voxels when empty); one line when one is missing."""
    if not rois:
        return np.arange(d["train/fmri"].shape[1])
    names = [str(n) for n in np.asarray(d["voxels/roi_names"]).astype(str)]
    missing = [r for r in rois if r not in names]
    if missing:
        raise InputError(f"{path}: latentreg.{key} names ROI(s) {missing} that the unit's voxels do not have "
                         f"(voxels/roi_names: {names}); set latentreg.{key} to some of them, or [] for all")  # fmt: skip
    member = np.asarray(d["voxels/roi_membership"], bool)[[names.index(r) for r in rois]].any(0)
    if not member.any():
        raise InputError(f"{path}: latentreg.{key} {rois} select no voxels")
    return np.flatnonzero(member)


def standardise(x: np.ndarray) -> np.ndarray:
    """One scalar mean and sd over the whole set (their code)."""
    x = np.asarray(x, np.float32)
    return (x - x.mean()) / max(float(x.std()), 1e-6)


def split_images(image_index: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (fit, validation) over training trials: a seeded ``fraction`` of the distinct
    images goes to validation with every trial of it."""
    images = np.unique(image_index)
    n_val = max(1, int(round(fraction * len(images))))
    if n_val >= len(images):
        raise InputError(f"latentreg.validation_fraction {fraction}: leaves no training images of {len(images)}")
    held = np.random.default_rng(seed).permutation(images)[:n_val]
    val = np.isin(image_index, held)
    return ~val, val


class EarlyStopping:
    """``on_epoch`` / ``stop_when`` of :meth:`Trainer.fit`: the validation MSE of the latent each
    epoch; keeps the best epoch's weights (also in ``store``, a file beside the job's checkpoint,
    so a resumed run restores them even when the best epoch preceded the resume); stops after
    ``patience`` epochs without a lower one."""

    def __init__(self, model, predict, x_val: torch.Tensor, y_val: torch.Tensor, patience: int, store: str = ""):
        self.model, self.predict, self.x_val, self.y_val = model, predict, x_val, y_val
        self.patience, self.store = int(patience), store
        self.best, self.best_epoch, self.state = float("inf"), 0, None

    def __call__(self, epoch: int) -> dict:
        mse = float(F.mse_loss(self.predict(self.x_val), self.y_val))
        if mse < self.best:
            self.best, self.best_epoch = mse, epoch
            self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            if self.store:
                os.makedirs(os.path.dirname(self.store) or ".", exist_ok=True)
                with atomic_path(self.store) as tmp:
                    save_file({k: v.contiguous().cpu() for k, v in self.state.items()}, str(tmp),
                              metadata={"epoch": str(epoch), "val_mse": repr(mse)})  # fmt: skip
        return {"val_mse": mse}

    def stop_when(self, history: list[dict]) -> bool:
        vals = [r["val_mse"] for r in history if "val_mse" in r]
        if not vals:
            return False
        best = int(np.argmin(vals))
        if self.best_epoch == 0:  # a resumed run: the best epoch so far is in the history
            self._resume(best + 1, float(vals[best]))
        return len(vals) - 1 - best >= self.patience

    def _resume(self, epoch: int, mse: float) -> None:
        self.best, self.best_epoch = mse, epoch
        if self.store and os.path.exists(self.store):
            with safe_open(self.store, "pt") as fh:
                if fh.metadata().get("epoch") == str(epoch):
                    self.state = {k: fh.get_tensor(k) for k in fh.keys()}

    def restore(self) -> None:
        """Load the best epoch's weights into the model and remove ``store``."""
        if self.state is None:
            raise RuntimeError(f"early stopping: the weights of the best epoch {self.best_epoch} are lost")
        self.model.load_state_dict(self.state)
        if self.store and os.path.exists(self.store):
            os.remove(self.store)


def _predict_batched(model, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])


def _fit_network(name, kind, target_kind, x_fit, y_fit, x_val, y_val, settings, train, training, checkpoint_dir,
                 seed, device, graph=None, inputs=()):  # fmt: skip
    """Build and train one regressor with early stopping; returns (model, trainer, stopper)."""
    torch.manual_seed(seed)  # initial weights
    size = settings["size"]
    out_dim = y_fit.shape[1]
    if kind == "gcn":
        lap = scaled_laplacian(torch.from_numpy(graph["weights"]))
        model = nets.LatentGCN(x_fit.shape[1], x_fit.shape[2], out_dim, lap, size)
    elif kind == "vae":
        model = nets.LatentVAE(x_fit.shape[1], out_dim, size)
    else:
        model = nets.LatentCNN(x_fit.shape[1], out_dim, target_kind, size)
    model.to(device)

    def step(idx, gen):
        xb, yb = x_fit[idx].to(device), y_fit[idx].to(device)
        if kind == "vae":
            return nets.vae_loss(model, xb, yb, gen)
        return {"loss": F.mse_loss(model(xb), yb)}

    opt = {"epochs": int(train["epochs"]), "batch_size": int(train["batch_size"]), "lr": float(train["lr"]),
           "optimizer": train.get("optimizer", "adam"), "schedule": train.get("schedule", "constant"),
           **{k: train[k] for k in ("lr_min", "warmup_fraction", "cycles", "weight_decay", "betas", "grad_clip") if k in train}}  # fmt: skip
    stopper = EarlyStopping(model, lambda x: _predict_batched(model, x.to(device)).cpu(), x_val, y_val,
                            settings["patience"], store=f"{checkpoint_dir}/{name}-best.safetensors")  # fmt: skip
    fp = fingerprint(f"train_latent_regressor/{name}", [kind, size, opt, settings], seed, list(inputs), training, device)
    trainer = Trainer(name=f"train_latent_regressor/{name}", modules={name: model}, settings=opt, training=training,
                      checkpoint_dir=f"{checkpoint_dir}/{name}", fingerprint=fp, seed=seed, device=device)  # fmt: skip
    trainer.fit(len(x_fit), step, on_epoch=stopper, stop_when=stopper.stop_when)
    stopper.restore()
    model.eval()
    log.info("%s (%s): best validation MSE %.5f at epoch %d of %d", name, kind, stopper.best, stopper.best_epoch,
             len(trainer.history))  # fmt: skip
    return model, trainer, stopper


def _targets(branch: str, images: str, autoencoder: str, text: str, image_size: int, device):
    """Per training and test image the flattened target and its shape: ``z`` (the first stage's
    scaled posterior mean at ``image_size``) or ``c`` (the mean caption tokens)."""
    if branch == "z":
        lat = first_stage_latents(autoencoder, images, ("train", "test"), image_size, device)
    else:
        lat = {s: torch.from_numpy(read_tokens(text, s)) for s in ("train", "test")}
    return {s: v.flatten(1) for s, v in lat.items()}, tuple(lat["train"].shape[1:])


def train_latent_regressor(data: str, images: str, autoencoder: str, text: str, branch: str, settings: dict,
                           training: dict, checkpoint_dir: str, seed: int, model: str, predictions: str,
                           loss_log: str, train_summary: str) -> None:  # fmt: skip
    """Rule ``train_latent_regressor``: one branch (``z`` or ``c``) of one unit; ``settings`` is the
    branch's slice (``regressor``, ``rois``, ``selection``, … — see :func:`.dag.branch_settings`),
    so methods that share a branch share its job (module doc)."""
    t0 = time.monotonic()
    kind = settings["regressor"]
    d = prepared.read_subject_file(data)
    rows_tr = np.asarray(d["train/image_index"], np.int64)
    rows_te = np.asarray(d["test/image_index"], np.int64)
    device = select_device(training["device"])
    target, shape = _targets(branch, images, autoencoder, text, int(settings.get("image_size", 0)), device)
    for s, rows in (("train", rows_tr), ("test", rows_te)):
        if rows.max(initial=-1) >= len(target[s]):
            raise InputError(f"{data}: /{s}/image_index points past the {len(target[s])} {s} images of "
                             f"{text if branch == 'c' else images}")  # fmt: skip
    x_tr_all = standardise(d["train/fmri"])
    x_te_all = standardise(d["test/fmri"])
    selection = settings["selection"]
    if selection == "validation":
        fit_mask, val_mask = split_images(rows_tr, float(settings["validation_fraction"]), seed)
    else:
        fit_mask, val_mask = np.ones(len(rows_tr), bool), None
    rois_key = f"{branch}_rois"
    cols = roi_columns(d, settings["rois"], data, rois_key)
    y_tr, y_te = target["train"][rows_tr], target["test"][rows_te]
    xv_tr, xv_te = x_tr_all[:, cols], x_te_all[:, cols]
    info = {"branch": branch, "regressor": kind, "rois": settings["rois"] or ["(all voxels of the unit)"],
            "n_voxels": len(cols), "selection": SELECTION_NOTE[selection], "target_shape": list(shape)}  # fmt: skip
    trainer = None
    if kind == "ridge":
        r = RidgeDecoder(settings["alphas"], seed=seed).fit(xv_tr, y_tr.numpy())
        pred = r.predict(xv_te).astype(np.float32)
        w = (r.x_train.T @ r.dual).astype(np.float32)
        info["alpha"] = float(r.alpha)
        tensors = {"ridge.weight": torch.from_numpy(w),
                   "ridge.bias": torch.from_numpy((r.y_mean - r.x_mean @ w).astype(np.float32))}  # fmt: skip
        with atomic_path(model) as tmp:
            save_file(tensors, str(tmp), metadata={"hparams": json.dumps(info, sort_keys=True)})
        write_json(model[: -len(".safetensors")] + ".json", info)
    else:
        graph = None
        if kind == "gcn":
            try:
                nodes = roi_nodes(d["voxels/roi_names"], d["voxels/roi_membership"], settings["graph"]["nodes"])
            except ValueError as exc:
                raise InputError(f"{data}: latentreg.graph.nodes: {exc}") from None
            outside = [k for k, c in enumerate(nodes) if not np.isin(c, cols).all()]
            if outside:
                raise InputError(f"{data}: latentreg.graph.nodes {[settings['graph']['nodes'][k] for k in outside]} "
                                 f"have voxels outside latentreg.z_rois {settings['rois']}")  # fmt: skip
            means = np.stack([x_tr_all[fit_mask][:, c].mean(1) for c in nodes], 1)
            graph = {"weights": functional_graph(means, float(settings["graph"]["threshold"]))}
            info["graph_edges"] = graph["weights"].round(4).tolist()
            x_tr = torch.from_numpy(node_features(x_tr_all, nodes))
            x_te = torch.from_numpy(node_features(x_te_all, nodes))
        else:
            x_tr, x_te = torch.from_numpy(xv_tr), torch.from_numpy(xv_te)
        if selection == "validation":
            fit, val = torch.from_numpy(fit_mask), torch.from_numpy(val_mask)
            x_fit, y_fit, x_val, y_val = x_tr[fit], y_tr[fit], x_tr[val], y_tr[val]
        else:
            x_fit, y_fit, x_val, y_val = x_tr, y_tr, x_te, y_te
        net, trainer, stopper = _fit_network(branch, kind, "text" if branch == "c" else "image", x_fit, y_fit, x_val,
                                             y_val, settings, settings["train"], training, checkpoint_dir, seed,
                                             device, graph, inputs=[data, images, autoencoder if branch == "z" else text])  # fmt: skip
        with torch.no_grad():
            pred = _predict_batched(net, x_te.to(device)).cpu().numpy().astype(np.float32)
        info.update({"best_epoch": stopper.best_epoch, "epochs_run": len(trainer.history),
                     "best_validation_mse": stopper.best, "stopped_early": trainer.stopped_early,
                     "hparams": net.hparams})  # fmt: skip
        save_model(model, {branch: net.to("cpu")}, info)
    with atomic_path(predictions) as tmp, h5py.File(tmp, "w") as f:
        for key, value in (("pred", pred.reshape(-1, *shape)), ("true", y_te.numpy().reshape(-1, *shape)),
                           ("train_mean", y_tr.numpy().mean(0).reshape(shape)), ("image_index", rows_te)):  # fmt: skip
            f.create_dataset(key, data=value, track_times=False)
        f.attrs.update({"branch": branch, "regressor": kind, "selection": selection,
                        "transductive": int(selection == "test"), "selection_note": SELECTION_NOTE[selection]})  # fmt: skip
    history = trainer.history if trainer is not None else []
    write_loss_log(loss_log, [{k: v for k, v in r.items() if k != "step"} for r in history] or [{"epoch": 0}])
    summary = {**(trainer.summary() if trainer is not None else {"name": f"train_latent_regressor/{branch}",
                                                                  "device": device.type}),
               "wall_s": round(time.monotonic() - t0, 3), "branch": info}  # fmt: skip
    write_json(train_summary, summary)
    if trainer is not None:
        trainer.finish()
    log.info("train_latent_regressor: %s %s (%s) in %.1f s", branch, kind, SELECTION_NOTE[selection], time.monotonic() - t0)
