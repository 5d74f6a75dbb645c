"""ALBERT as a registered stage: data preparation, training (AdamW, layer-wise lr decay,
warm-up + cosine), inference (eq. 10 with the optional eq. 14 and eq. 20 priors), files.

Probability vectors returned per instance (``Instances.probs``):
- ``"damage"``: ``(N, n_damage + 1)`` softmax; columns 0..n_damage-1 follow
  ``taxonomy.head_index``, the last column is no-object. Sums to 1.
- ``"part"``: ``(N, n_part + 1)`` softmax, same layout. Sums to 1.
- ``"fake"``: ``(N, n_fake)`` independent sigmoids (fakes can co-occur).
Embeddings: the decoder's query vector per instance, the mean encoder token per image.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.geometry import mask_to_shape, masks_iou_matrix
from core.instances import ImageResult, Instances
from core.records import ImageRecord
from core.taxonomy import GROUPS, Taxonomy, default_taxonomy
from models.albert.config import AlbertConfig
from models.albert.losses import Target, albert_loss
from models.albert.model import AlbertModel
from models.base import (
    Progress,
    TrainingSet,
    TrainResult,
    check_images,
    limit_cpu_threads,
    load_checkpoint,
    resolve_device,
    restore_weights,
    save_checkpoint,
    taxonomy_counts,
)
from models.registry import register_stage

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1) * 255
HEADS = ("damage", "fake", "part")


def to_input(image: np.ndarray, size: int) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, S, S)`` float, ImageNet-normalised (aspect not kept)."""
    import cv2

    im = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return (torch.from_numpy(im).permute(2, 0, 1).float() - MEAN) / STD


def record_target(rec: ImageRecord, taxonomy: Taxonomy, mask_size: int) -> Target:
    """Ground truth of one image at mask-feature resolution; a damage or fake instance's part
    is its ``part_id`` attribute, else the labelled part it overlaps most."""
    import cv2

    counts = taxonomy_counts(taxonomy)
    inst = rec.instances
    h, w = rec.height, rec.width
    full = inst.masks(h, w)
    groups = [taxonomy.by_id(int(c)).group for c in inst.class_ids]
    part_ids = [i for i, g in enumerate(groups) if g == "part"]
    m = len(inst)
    damage = torch.full((m,), counts["damage"], dtype=torch.long)
    part = torch.full((m,), counts["part"], dtype=torch.long)
    fake = torch.zeros((m, counts["fake"]))
    head = torch.zeros(m, dtype=torch.long)
    index = torch.zeros(m, dtype=torch.long)
    for i, (c, g) in enumerate(zip(inst.class_ids, groups, strict=True)):
        idx = taxonomy.head_index(int(c))
        head[i], index[i] = HEADS.index(g), idx
        if g == "part":
            part[i] = idx
            continue
        if g == "damage":
            damage[i] = idx
        else:
            fake[i, idx] = 1.0
        pid = inst.attributes[i].get("part_id") if inst.attributes else None
        if pid is not None and int(pid) in taxonomy and taxonomy.by_id(int(pid)).group == "part":
            part[i] = taxonomy.head_index(int(pid))
        elif part_ids:
            overlap = [(full[i] & full[j]).sum() for j in part_ids]
            if max(overlap) > 0:
                part[i] = taxonomy.head_index(
                    int(inst.class_ids[part_ids[int(np.argmax(overlap))]])
                )
    small = (
        np.stack(
            [
                cv2.resize(
                    f.astype(np.float32), (mask_size, mask_size), interpolation=cv2.INTER_AREA
                )
                for f in full
            ]
        )
        if m
        else np.zeros((0, mask_size, mask_size), np.float32)
    )
    return Target(torch.from_numpy(small), damage, part, fake, head, index)


def param_groups(model: AlbertModel, cfg: AlbertConfig) -> list[dict[str, Any]]:
    """Layer-wise lr decay: block i of L gets lr * decay^(L - i); the embedding decay^(L + 1);
    neck, decoder and heads the full lr. Norms and biases get no weight decay."""
    depth = len(model.encoder.blocks)
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if name.startswith("encoder.blocks."):
            scale = cfg.layer_decay ** (depth - int(name.split(".")[2]))
        elif name.startswith("encoder.norm"):
            scale = 1.0
        elif name.startswith("encoder."):
            scale = cfg.layer_decay ** (depth + 1)
        else:
            scale = 1.0
        wd = (
            0.0
            if p.ndim == 1
            or name.endswith("pos_embed")
            or name.endswith("query")
            or name.endswith("memory_pos")
            else cfg.weight_decay
        )
        groups.setdefault((scale, wd), []).append(p)
    return [
        {"params": ps, "lr": cfg.lr * s, "lr_scale": s, "weight_decay": wd}
        for (s, wd), ps in groups.items()
    ]


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


@register_stage("albert")
class AlbertStage:
    config_class = AlbertConfig
    name = "albert"

    def __init__(self, config: AlbertConfig | None = None, taxonomy: Taxonomy | None = None):
        limit_cpu_threads()
        self.config = config or AlbertConfig.from_preset("tiny")
        self.taxonomy = taxonomy or default_taxonomy()
        self.counts = taxonomy_counts(self.taxonomy)
        torch.manual_seed(self.config.seed)
        self.model = AlbertModel(
            self.config, self.counts["damage"], self.counts["fake"], self.counts["part"]
        )
        if self.config.vit_weights:
            from models.albert.encoder import load_vit_weights

            load_vit_weights(self.model.encoder, self.config.vit_weights)
        self.device, self.amp = resolve_device(self.config.device)
        self.model.to(self.device).eval()

    @property
    def mask_size(self) -> int:
        return self.config.image_size // self.config.mask_stride

    # -- training -----------------------------------------------------------------
    def train(
        self,
        dataset: TrainingSet,
        config: AlbertConfig | None = None,
        progress: Progress | None = None,
        out_path: str | Path | None = None,
    ) -> TrainResult:
        cfg = config or self.config
        self.config = cfg
        if not len(dataset):
            raise ValueError("the training set is empty: label some images first")
        t0 = time.perf_counter()
        xs = torch.stack(
            [to_input(dataset.load_image(i), cfg.image_size) for i in range(len(dataset))]
        )
        targets = [record_target(r, dataset.taxonomy, self.mask_size) for r in dataset.records]
        net, rank, world = self._distributed()
        # every rank draws the same permutation and takes its own equal-length share
        per_rank = math.ceil(len(xs) / world)
        steps_per_epoch = math.ceil(per_rank / cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        opt = torch.optim.AdamW(param_groups(self.model, cfg), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, cfg.warmup_steps, total)
        )
        gen = torch.Generator().manual_seed(cfg.seed)
        mirrors = {h: torch.from_numpy(dataset.taxonomy.mirror_index(h)) for h in GROUPS}
        self.model.train()
        history: list[float] = []
        for epoch in range(cfg.epochs):
            order = torch.randperm(len(xs), generator=gen)
            order = order.repeat(world)[rank::world][:per_rank]
            ep = []
            for s in range(steps_per_epoch):
                idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
                flip = torch.rand(len(idx), generator=gen) < cfg.hflip
                x = xs[idx]  # a copy: flipping it in place leaves xs alone
                if flip.any():
                    x[flip] = x[flip].flip(-1)
                x = x.to(self.device)
                tg = [
                    _target_to(
                        targets[int(i)].mirrored(mirrors) if f else targets[int(i)], self.device
                    )
                    for i, f in zip(idx, flip.tolist(), strict=True)
                ]
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    out = net(x)
                loss, terms = albert_loss(out, tg, cfg)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                ep.append(float(loss.detach()))
            history.append(float(np.mean(ep)))
            if progress:
                progress(epoch + 1, cfg.epochs, {"epoch": epoch + 1, "loss": history[-1]})
        self.model.eval()
        metrics = {
            "epoch_losses": history,
            "train_images": len(xs),
            "train_seconds": time.perf_counter() - t0,
            "images_per_second": len(xs) * cfg.epochs / max(1e-9, time.perf_counter() - t0),
        }
        metrics["world_size"] = world
        metrics["images_per_second"] *= world
        path = Path(out_path) if out_path else Path(f"{self.name}.pt")
        if rank == 0:
            self.save(path)
        if world > 1:
            torch.distributed.barrier()
        return TrainResult(path, metrics)

    def _distributed(self) -> tuple[torch.nn.Module, int, int]:
        """Under ``torchrun`` (WORLD_SIZE > 1): join the process group (NCCL on GPUs, gloo on
        CPUs), move to this rank's GPU and wrap the model in DDP. Else the plain model."""
        import os

        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return self.model, 0, 1
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        cuda = self.device.type == "cuda"
        if not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if cuda:
            torch.cuda.set_device(local)
            self.device = torch.device("cuda", local)
            self.model.to(self.device)
        # an image batch with no instances leaves the mask head without gradients
        net = DistributedDataParallel(
            self.model, device_ids=[local] if cuda else None, find_unused_parameters=True
        )
        return net, dist.get_rank(), dist.get_world_size()

    # -- inference ------------------------------------------------------------------
    @torch.inference_mode()
    def forward_images(self, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
        x = torch.stack([to_input(im, self.config.image_size) for im in images]).to(self.device)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(x)
        return {k: v.float().cpu() for k, v in out.items()}

    def predict(self, images: list[np.ndarray]) -> list[ImageResult]:
        check_images(images)
        results = []
        for start in range(0, len(images), max(1, self.config.batch_size)):
            chunk = images[start : start + self.config.batch_size]
            out = self.forward_images(chunk)
            for k, im in enumerate(chunk):
                results.append(
                    self.postprocess({n: v[k] for n, v in out.items()}, im.shape[0], im.shape[1])
                )
        return results

    def postprocess(self, out: dict[str, torch.Tensor], height: int, width: int) -> ImageResult:
        """One image's raw outputs -> instances in original pixels (eq. 10, 14, 20)."""
        import cv2

        cfg = self.config
        mprob = out["masks"].sigmoid().numpy()  # (N, h, w)
        zd = out["damage"].clone()
        pp = out["part"].softmax(-1).numpy()
        pf = out["fake"].sigmoid().numpy()
        if cfg.part_prior_alpha:
            zd = part_prior_boost(zd, mprob, pp, cfg.part_prior_alpha, cfg.score_threshold)
        pd = zd.softmax(-1).numpy()
        head_scores = np.stack([pd[:, :-1].max(1), pf.max(1), pp[:, :-1].max(1)], 1)
        head = head_scores.argmax(1)
        scores = head_scores.max(1)
        binm = mprob > 0.5
        keep: list[int] = []
        for i in np.argsort(-scores):
            if scores[i] <= cfg.score_threshold or len(keep) >= cfg.top_k or not binm[i].any():
                continue
            same = [j for j in keep if head[j] == head[i]]
            if same and masks_iou_matrix(binm[i][None], binm[same]).max() >= cfg.nms_iou:
                continue
            keep.append(int(i))
        shapes, kept, cids = [], [], []
        for i in keep:
            m = mprob[i]
            if cfg.gaussian_prior and head[i] == 0:
                m = gaussian_prior(m, cfg.gaussian_sigma_scale)
            full = cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) > 0.5
            shape = mask_to_shape(full, tolerance=1.0, min_area=4.0)
            if shape is None:
                continue
            idx = int((pd[i, :-1], pf[i], pp[i, :-1])[head[i]].argmax())
            shapes.append(shape)
            kept.append(i)
            cids.append(self.taxonomy.class_at(HEADS[head[i]], idx).id)
        kept_a = np.asarray(kept, dtype=np.int64)
        inst = Instances(
            shapes=shapes,
            class_ids=np.asarray(cids, dtype=np.int64),
            scores=scores[kept_a],
            probs={"damage": pd[kept_a], "fake": pf[kept_a], "part": pp[kept_a]},
            embeddings=out["queries"].numpy()[kept_a],
        )
        return ImageResult(inst, image_embedding=out["image"].numpy(), meta={"stage": self.name})

    # -- files ------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        return save_checkpoint(
            path,
            stage=self.name,
            config=self.config,
            class_counts=self.counts,
            state_dict={k: v.cpu() for k, v in self.model.state_dict().items()},
            extra={"taxonomy": self.taxonomy.as_list()},
        )

    @classmethod
    def load(
        cls, path: str | Path, taxonomy: Taxonomy | None = None, device: str = "auto", **_: Any
    ) -> AlbertStage:
        taxonomy = taxonomy or default_taxonomy()
        payload = load_checkpoint(path, stage=cls.name, class_counts=taxonomy_counts(taxonomy))
        cfg = AlbertConfig.from_dict({**payload["config"], "device": device, "vit_weights": None})
        stage = cls(cfg, taxonomy)
        restore_weights(stage.model, payload["state_dict"], path, "ALBERT's architecture")
        return stage

    def evaluate(self, dataset: TrainingSet) -> dict[str, Any]:
        from models.albert.metrics import classification_metrics, coco_mask_ap

        pairs = []
        for i, rec in enumerate(dataset.records):
            img = dataset.load_image(i)
            pred = self.predict([img])[0].instances
            pairs.append((pred, rec.instances, img.shape[0], img.shape[1]))
        out: dict[str, Any] = {}
        for g in HEADS:
            out[g] = classification_metrics(pairs, dataset.taxonomy, g)
            out[g]["coco"] = coco_mask_ap(pairs, dataset.taxonomy, g)
        return out


def part_prior_boost(
    zd: torch.Tensor, mprob: np.ndarray, pp: np.ndarray, alpha: float, tau: float
) -> torch.Tensor:
    """Eq. 20: z_d' = z_d + alpha * mean of the query's mask over the part region R_p, with R_p
    the most overlapped confident part mask of the same image. No-object logits stay."""
    parts = [j for j in range(len(pp)) if pp[j, :-1].max() > tau]
    if not parts:
        return zd
    regions = mprob[parts] > 0.5
    boost = np.zeros(len(mprob), dtype=np.float32)
    for i in range(len(mprob)):
        means = [mprob[i][r].mean() for r in regions if r.any()]
        boost[i] = max(means) if means else 0.0
    zd = zd.clone()
    zd[:, :-1] += alpha * torch.from_numpy(boost)[:, None]
    return zd


def gaussian_prior(m: np.ndarray, sigma_scale: float) -> np.ndarray:
    """Eq. 14: M * exp(-((i-i*)^2 + (j-j*)^2) / (2 sigma^2)) around the mask's weighted centre;
    sigma = sigma_scale * sqrt(area above 0.5), so it sharpens without erasing the instance."""
    area = float((m > 0.5).sum())
    if area == 0:
        return m
    yy, xx = np.mgrid[0 : m.shape[0], 0 : m.shape[1]]
    w = m / m.sum()
    cy, cx = float((yy * w).sum()), float((xx * w).sum())
    sigma = sigma_scale * math.sqrt(area)
    return m * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))


def _target_to(t: Target, device: torch.device) -> Target:
    return Target(
        *(getattr(t, f).to(device) for f in ("masks", "damage", "part", "fake", "head", "index"))
    )
