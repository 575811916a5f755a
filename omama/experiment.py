"""One experiment as the config defines it, resolved once, and the files it reads.

``Experiment.resolve(config, name)`` takes the validated config (the schema's defaults filled) and
gathers everything an experiment is: its dataset and the datasets it is evaluated on, its backbone and
proposer entries, split, direction, matcher, initial weights, training, existence head, temporal memory
and adaptation; what follows from them (the feature mode, whether it has head weights, which split it
uses on each dataset) is decided here and nowhere else. ``Inputs`` holds the files one stage of it
reads, built from ``snakemake.input`` (``Inputs.of``) or from the results layout (``Inputs.from_layout``,
for code run outside the workflow such as ``omama match``). Light: no numpy or torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from omama.direction import Direction

ALL = "all"  # the split of a dataset an experiment is evaluated on but not trained on: every row is a test row


@dataclass(frozen=True)
class Experiment:
    """An experiment's settings (the schema's defaults filled); a stage gets the part it reads
    (``settings(stage)``) and rebuilds it with ``Experiment(name=..., **settings)``."""

    name: str
    dataset: str = ""
    evaluate_on: tuple[str, ...] = ()
    backbone_name: str = ""
    backbone: dict = field(default_factory=dict)
    proposer_name: str = ""
    proposer: dict = field(default_factory=dict)
    split: str = ""
    direction: str = "exo2ego"
    matcher: str = "omama"
    init: str = "none"
    train: dict | None = None
    existence: str = "similarity"
    existence_train: dict = field(default_factory=dict)
    temporal: str = "none"
    temporal_memory: dict = field(default_factory=dict)
    adapt: str = "none"
    adaptation: dict = field(default_factory=dict)

    @classmethod
    def resolve(cls, config: dict, name: str) -> Experiment:
        """The experiment ``name`` of a validated config; an unknown name, backbone, proposer or dataset
        is an error naming the key."""
        experiments = config["experiments"]
        if name not in experiments:
            raise ValueError(f"unknown experiment {name!r}; known: {sorted(experiments)}")
        x = experiments[name]
        where = f"experiments.{name}"
        for key, section in (("backbone", "backbones"), ("proposer", "proposers"), ("dataset", "datasets")):
            if x[key] not in config[section]:
                raise ValueError(
                    f"{where}.{key} names {x[key]!r}, which is not under {section}: (known: {sorted(config[section])})"
                )
        evaluate_on = tuple(x["evaluate_on"] or [x["dataset"]])
        for d in evaluate_on:
            if d not in config["datasets"]:
                raise ValueError(
                    f"{where}.evaluate_on names {d!r}, which is not under datasets: (known: {sorted(config['datasets'])})"
                )
        own = {f.name for f in fields(cls)} - {"name", "backbone_name", "proposer_name", "evaluate_on"}
        return cls(
            name=name,
            evaluate_on=evaluate_on,
            backbone_name=x["backbone"],
            proposer_name=x["proposer"],
            **{k: v for k, v in x.items() if k in own and k not in ("backbone", "proposer")},
            backbone=config["backbones"][x["backbone"]],
            proposer=config["proposers"][x["proposer"]],
        )

    # -- what follows from the settings, decided here once

    @property
    def trained(self) -> bool:
        return self.train is not None

    @property
    def has_head(self) -> bool:
        """Whether it has head weights (model.pt): every matcher but the training-free cosine one."""
        return self.matcher == "omama"

    @property
    def feature_mode(self) -> str:
        """pre-extracted (the feature stores) or on-the-fly (the frozen backbone on the frames): the training
        setting; an experiment that is not trained reads the stores."""
        return self.train["features"] if self.train else "pre-extracted"

    @property
    def on_the_fly(self) -> bool:
        return self.feature_mode == "on-the-fly"

    @property
    def init_experiment(self) -> str | None:
        """The experiment whose model.pt it starts from (``init: experiment:<name>``), else None."""
        return self.init.split(":", 1)[1] if self.init.startswith("experiment:") else None

    @property
    def init_path(self) -> str | None:
        """A state dict file it starts from, else None."""
        return None if self.init == "none" or self.init_experiment else self.init

    @property
    def way(self) -> Direction:
        return Direction(self.direction)

    def split_on(self, dataset: str) -> str:
        """The split it uses on ``dataset``: its own on its dataset; every row a test row on another."""
        return self.split if dataset == self.dataset else ALL

    def subsets_on(self, dataset: str, evaluated: list[str]) -> list[str]:
        """The subsets it is predicted and scored on, on ``dataset``: ``evaluate.subsets`` on its own dataset,
        test on another."""
        return list(evaluated) if dataset == self.dataset else ["test"]

    STAGES = {
        # the matching head's settings
        "train": (
            "dataset",
            "backbone_name",
            "backbone",
            "proposer_name",
            "proposer",
            "split",
            "direction",
            "matcher",
            "init",
            "train",
        ),
        # and its existence head's
        "existence": ("existence", "existence_train"),
        # the temporal memory's fit on validation
        "temporal": ("temporal_memory",),
        # what shapes a prediction, given the trained heads
        "predict": ("existence", "temporal", "temporal_memory", "adapt", "adaptation"),
        # what the report shows
        "report": ("evaluate_on", "existence"),
    }

    def settings(self, stage: str) -> dict:
        """The settings a stage reads (a rule's params, so that changing one re-runs only the stages that read
        it): ``train`` the matching head's; ``existence`` its existence head's too; ``predict`` those that
        shape a prediction; ``report`` what the report shows. Plain values (lists for tuples)."""
        if stage not in self.STAGES:
            raise ValueError(f"unknown stage {stage!r}; known: {sorted(self.STAGES)}")
        keys = {*self.STAGES["train"], *self.STAGES[stage]}
        if stage in ("predict", "report"):
            keys -= {"existence_train"}
        d = asdict(self)
        return {k: list(d[k]) if isinstance(d[k], tuple) else d[k] for k in sorted(keys)}

    @classmethod
    def of(cls, name: str, settings: dict) -> Experiment:
        """The experiment a stage's ``settings`` describe (``settings(stage)``); the settings it was not given
        keep their neutral defaults."""
        return cls(name=name, **{k: tuple(v) if k == "evaluate_on" else v for k, v in settings.items()})


def experiments(config: dict) -> dict[str, Experiment]:
    """Every experiment of a validated config, resolved."""
    return {name: Experiment.resolve(config, name) for name in config["experiments"]}


@dataclass(frozen=True)
class Inputs:
    """The files one stage of an experiment reads on one dataset (each optional per stage)."""

    split: str | None = None
    annotations: tuple[str, ...] = ()
    proposals: tuple[str, ...] = ()
    features: tuple[str, ...] | None = None
    images: tuple[str, ...] | None = None
    exo_proposals: tuple[str, ...] | None = None
    model: str | None = None
    calibration: str | None = None
    init: str | None = None
    temporal: str | None = None

    @classmethod
    def from_layout(cls, layout, experiment: Experiment, dataset: str, takes: list[str], stage: str = "predict") -> Inputs:
        """The files ``stage`` (train, existence, predict) of ``experiment`` reads on ``dataset``'s ``takes`` in
        the results ``layout`` (an ``omama.layout.Layout``): the workflow's rules and ``omama match`` alike."""
        x, d = experiment, layout.data(dataset)
        per_take = lambda pattern: tuple(pattern(t) for t in takes)
        heads = {}
        if stage == "train":
            init = layout.model(x.init_experiment) if x.init_experiment else x.init_path
            heads = {"init": init}
        elif stage == "existence":
            heads = {"model": layout.model(x.name)}
        elif stage == "temporal":
            heads = {"model": layout.model(x.name)}
        elif x.existence == "head":
            heads = {
                "model": layout.existence("model.pt", x.name),
                "calibration": layout.existence("calibration.json", x.name),
            }
        elif x.has_head:
            heads = {"model": layout.model(x.name)}
        if stage == "predict" and x.temporal == "memory":
            heads["temporal"] = layout.temporal(x.name)
        untrained = stage == "train" and x.train is None  # writes its initial weights: no split is read
        return cls(
            split=None if untrained else d.split(x.split_on(dataset)),
            annotations=per_take(d.annotation),
            proposals=per_take(lambda t: d.proposals(x.proposer_name, t)),
            features=None if x.on_the_fly else per_take(lambda t: d.features(x.backbone_name, t)),
            images=per_take(d.images) if x.on_the_fly else None,
            exo_proposals=per_take(lambda t: d.exo_proposals(x.proposer_name, t)) if x.direction == "ego2exo" else None,
            **heads,
        )

    def files(self) -> dict:
        """The files by name (lists for the per-take ones), those given only: a rule's named inputs."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v is not None and v != ()}

    @classmethod
    def of(cls, snakemake_input) -> Inputs:
        """From a job's ``snakemake.input`` (named inputs; absent names stay None)."""
        get = lambda k: getattr(snakemake_input, k, None)
        many = lambda k: None if get(k) is None else tuple(map(str, get(k)))
        one = lambda k: None if get(k) is None or not len(get(k)) else str(get(k))
        return cls(
            split=one("split"),
            annotations=many("annotations") or (),
            proposals=many("proposals") or (),
            features=many("features"),
            images=many("images"),
            exo_proposals=many("exo_proposals"),
            model=one("model"),
            calibration=one("calibration"),
            init=one("init"),
            temporal=one("temporal"),
        )
