"""Networks and decoders, one module per family."""


class SavedNetwork:
    """Mixin: ``cls.from_file(path)`` rebuilds the network from the hyper-parameters saved with its
    weights (``fmrirecon.train.files.save_model``), so loading one needs nothing but its file."""

    #: the name its weights are saved under in the file
    FILE_KEY = ""

    @classmethod
    def from_hparams(cls, hp: dict):
        raise NotImplementedError

    @classmethod
    def from_file(cls, path: str, key: str = ""):
        from ..train.files import load_into, read_hparams

        model = cls.from_hparams(read_hparams(path))
        load_into(path, {key or cls.FILE_KEY: model})
        return model
