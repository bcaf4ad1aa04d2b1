"""train-dog: 120 dog breeds on an ImageNet ResNet-34, frozen or fine-tuned.

``finetune.mode`` answers "should the pretrained part be frozen?" three ways:
frozen (backbone fixed, its BatchNorm in eval mode: the book leaves BatchNorm in
training mode, which keeps changing the "frozen" features), partial (the last stage
and the head train) and full (everything trains, the backbone at a smaller lr).
Frozen without augmentation computes the backbone features once
(``finetune.cache_features``) and trains the head on the cached tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from cvtool import config as c
from cvtool.data import datasets, kaggle, presets, transforms
from cvtool.data.images import check_images
from cvtool.engine import runtime
from cvtool.engine.progress import terminal_progress
from cvtool.engine.task import StepOutput, Task
from cvtool.models.weights import pretrained
from cvtool.tasks import classify
from cvtool.tasks.specs.dog import SPEC, Config

COLUMNS = ("train_loss", "val_loss", "val_acc", "val_top5")
BREEDS = 120  # the Kaggle competition's
TOP_K = 5  # val_top5 is left out with TOP_K classes or fewer: it would always be 1


# --------------------------------------------------------------------------- model


class DogNet(nn.Module):
    """A torchvision ResNet backbone and a Linear-ReLU-Linear head.

    ``from_features=True`` runs only the head, on cached backbone outputs; as a forward
    argument it passes through DDP and torch.compile wrappers.
    """

    def __init__(self, backbone: nn.Module, head_on: str, hidden: int, num_classes: int):
        super().__init__()
        if head_on == "features":
            width = backbone.fc.in_features
            backbone.fc = nn.Identity()
        else:
            width = backbone.fc.out_features
        self.backbone = backbone
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor, from_features: bool = False) -> torch.Tensor:
        return self.head(x if from_features else self.backbone(x))

    def trainable_backbone(self, mode: str) -> list[nn.Module]:
        """The pretrained modules that train in ``mode``."""
        if mode == "full":
            return [self.backbone]
        if mode == "partial":
            return [self.backbone.layer4, self.backbone.fc]
        return []


def make_model(cfg: Config, weights: str | None) -> DogNet:
    m = cfg.model
    return DogNet(pretrained("resnet34", weights), m.head_on, m.hidden, c.class_count(m.num_classes, BREEDS))


def build_model(cfg: Config) -> nn.Module:
    return make_model(cfg, None)


def setup_finetune(model: DogNet, mode: str, backbone_lr_mult: float) -> tuple[Callable[[nn.Module], None],
                                                                               Callable[[nn.Module], list[dict]]]:
    """Freeze what ``mode`` keeps fixed; return the train-mode hook and the param groups.

    The hook puts every frozen module (BatchNorm included) in eval mode each epoch, so
    frozen means frozen: no gradient and no running-statistics update.
    """
    trainable = nn.ModuleList([model.head, *model.trainable_backbone(mode)])
    train_mode = classify.freeze(model, trainable)

    def groups(m: nn.Module) -> list[dict]:
        backbone = [p for p in m.backbone.parameters() if p.requires_grad]
        return [{"params": list(m.head.parameters()), "lr_mult": 1.0},
                {"params": backbone, "lr_mult": backbone_lr_mult}]

    return train_mode, groups


# --------------------------------------------------------------------------- data


def train_transform(cfg: Config) -> v2.Compose:
    d = cfg.data
    if not d.augment:
        return eval_transform(cfg)
    return presets.classification_train(d.image_size, d.mean, d.std, scale=d.crop_scale, ratio=(3 / 4, 4 / 3),
                                        jitter=d.jitter)


def eval_transform(cfg: Config) -> v2.Compose:
    d = cfg.data
    return presets.classification_eval(d.image_size, d.resize, d.mean, d.std, square=False)


def loader(dataset: datasets.ImageRows, cfg: Config) -> DataLoader:
    return DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=False, num_workers=cfg.data.num_workers)


@torch.no_grad()
def backbone_features(model: DogNet, dataset: datasets.ImageRows, cfg: Config,
                      device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, targets) of every image, computed once by the frozen backbone in eval mode."""
    backbone = model.backbone.to(device).eval()
    feats, targets = [], []
    for x, y in loader(dataset, cfg):
        feats.append(backbone(x.to(device)).float().cpu())
        targets.append(y)
    return torch.cat(feats), torch.cat(targets)


# --------------------------------------------------------------------------- steps


def make_train_step(cached: bool, label_smoothing: float = 0.0) -> Callable[[nn.Module, Any], StepOutput]:
    def train_step(model: nn.Module, batch: Any) -> StepOutput:
        x, y = batch
        loss = F.cross_entropy(model(x, from_features=cached), y, label_smoothing=label_smoothing)
        return StepOutput(loss=loss, count=len(y))

    return train_step


def columns_for(classes: int) -> tuple[str, ...]:
    return COLUMNS if classes > TOP_K else tuple(c for c in COLUMNS if c != "val_top5")


def make_evaluate(cached: bool) -> Callable[[nn.Module, Iterable, torch.device], dict[str, float]]:
    def evaluate(model: nn.Module, batches: Iterable, device: torch.device) -> dict[str, float]:
        """Kaggle's score (multi-class log loss), accuracy and (with more than 5 classes) top-5."""
        loss = torch.zeros((), device=device)
        top1 = torch.zeros((), device=device)
        top5 = torch.zeros((), device=device)
        confusion = classify.Confusion()
        n = 0
        for x, y in batches:
            logits = model(x, from_features=cached).float()
            confusion.update(logits, y)
            loss += F.cross_entropy(logits, y, reduction="sum")
            ranked = logits.topk(min(TOP_K, logits.shape[1]), dim=1).indices
            hits = ranked == y[:, None]
            top1 += hits[:, 0].sum()
            top5 += hits.any(dim=1).sum()
            n += len(y)
        if n == 0:
            return {}
        confusion.record()
        scores = {"val_loss": (loss / n).item(), "val_acc": (top1 / n).item()}
        if logits.shape[1] > TOP_K:
            scores["val_top5"] = (top5 / n).item()
        return scores

    return evaluate


def write_submission(model: nn.Module, test_dir: Path, columns: list[int], header: list[str], cfg: Config,
                     path: Path, device: torch.device) -> Path:
    """submission.csv: id then one probability per breed in the sample's column order."""
    ids = kaggle.test_ids(test_dir, kaggle.DOGS)
    files = [test_dir / (i + kaggle.DOGS.ext) for i in ids]
    check_images(files)
    rows = datasets.ImageRows(files, torch.arange(len(ids)), eval_transform(cfg))
    order = torch.tensor(columns)
    model.eval()
    with kaggle.SubmissionWriter(path, ("id", *header)) as out, torch.no_grad(), \
            terminal_progress("predicting the test set") as progress:
        for x, index in loader(rows, cfg):
            probs = model(x.to(device)).float().softmax(1).cpu()[:, order]
            out.probabilities([ids[i] for i in index.tolist()], probs)
            progress(out.rows, len(ids))
    return path


def submission_layout(folder: Path, classes: list[str]) -> tuple[list[int], list[str]]:
    """Column order from the folder's sample_submission.csv, else alphabetical (Kaggle's order)."""
    sample = kaggle.sample_columns(folder, kaggle.DOGS)
    columns = kaggle.submission_columns(classes, sample)
    return columns, [classes[i] for i in columns]


# --------------------------------------------------------------------------- task


def check(cfg: Config) -> None:
    d, f = cfg.data, cfg.finetune
    presets.check_crop_scale(d.crop_scale)
    if d.resize < d.image_size:
        raise c.ConfigError(f"data.resize ({d.resize}) must be >= data.image_size ({d.image_size})")
    if f.cache_features and (f.mode != "frozen" or d.augment):
        raise c.ConfigError("finetune.cache_features needs finetune.mode: frozen and data.augment: false "
                            "(cached features cannot change between epochs)")


def build(cfg: Config, rank_zero: bool = True) -> Task:
    check(cfg)
    d = cfg.data
    root = kaggle.locate(d.root, kaggle.DOGS, d.download, d.tiny)
    labeled = kaggle.read_labels(root, kaggle.DOGS, sample=cfg.data.tiny)
    cfg = c.with_num_classes(cfg, len(labeled.classes), str(root / kaggle.DOGS.labels_csv))
    listed = len(labeled.ids)
    if d.on_bad_image == "skip":
        labeled = labeled.readable()
    else:
        check_images(labeled.files)
    columns, header = submission_layout(root, labeled.classes)
    train_idx, val_idx = kaggle.split_indices(labeled.labels, d.split, d.valid_ratio, d.split_seed)
    model = make_model(cfg, cfg.model.weights)
    train_mode, groups = setup_finetune(model, cfg.finetune.mode, cfg.finetune.backbone_lr_mult)

    def rows(idx: torch.Tensor, transform: Callable) -> datasets.ImageRows:
        return datasets.ImageRows([labeled.files[i] for i in idx.tolist()], labeled.labels[idx], transform)

    val_items = [(labeled.files[i], int(labeled.labels[i])) for i in val_idx.tolist()]
    cached = cfg.finetune.cache_features
    if cached:
        device = runtime.local_device(cfg.train.device)  # under torchrun, this rank's GPU
        train = datasets.TensorBatches(*backbone_features(model, rows(train_idx, eval_transform(cfg)), cfg, device))
        val = datasets.TensorBatches(*backbone_features(model, rows(val_idx, eval_transform(cfg)), cfg, device))
        model.cpu()
    else:
        train = rows(train_idx, train_transform(cfg))
        val = rows(val_idx, eval_transform(cfg))

    def finish(model: nn.Module, run_dir: Path, device: torch.device) -> dict[str, str]:
        test_dir = root / "test"
        if not rank_zero or not test_dir.is_dir():
            return {}
        path = write_submission(model, test_dir, columns, header, cfg, run_dir / "submission.csv", device)
        return {"submission": str(path)}

    return Task(
        name=SPEC.command, config=cfg, model=model, train_data=train, val_data=val,
        train_step=make_train_step(cached, cfg.loss.label_smoothing), evaluate=make_evaluate(cached),
        columns=columns_for(len(labeled.classes)),
        best_metric="val_loss", best_mode="min", collate_fn=datasets.collate,
        param_groups=groups, train_mode=train_mode, finish=finish,
        pictures=classify.make_pictures(classify.file_samples(val_items, eval_transform(cfg)), labeled.classes),
        metadata={"classes": labeled.classes, "columns": header, "skipped_images": listed - len(labeled.ids)},
    )


def predict(model: nn.Module, cfg: Config, metadata: dict[str, Any], paths: list[Path],
            device: torch.device, options: dict[str, Any]) -> list[dict[str, Any]]:
    """Top breeds of ``paths``; with ``kaggle_test`` a submission.csv for that test folder."""
    classes = metadata["classes"]
    results: list[dict[str, Any]] = []
    if options.get("kaggle_test") is not None:
        folder = Path(options["kaggle_test"])
        test_dir = kaggle.find_test_dir(folder)
        sample_dir = folder if (folder / kaggle.DOGS.sample_csv).is_file() else test_dir.parent
        if (sample_dir / kaggle.DOGS.sample_csv).is_file():
            columns, header = submission_layout(sample_dir, classes)
        else:
            header = metadata.get("columns", classes)
            columns = kaggle.submission_columns(classes, header)
        out = Path(options.get("out") or ".") / "submission.csv"
        path = write_submission(model, test_dir, columns, header, cfg, out, device)
        results.append({"test_dir": str(test_dir), "submission": str(path),
                        "rows": len(kaggle.test_ids(test_dir, kaggle.DOGS))})
    if paths:
        results += classify.predict_images(model, eval_transform(cfg), classes, paths, device,
                                           top=options.get("top", 5))
    return results
