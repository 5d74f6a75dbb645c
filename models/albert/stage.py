"""ALBERT as a registered stage: training (AdamW, layer-wise lr decay, warm-up + cosine),
inference (eq. 10 with the optional eq. 14 and eq. 20 priors), files.

Probability vectors returned per instance (``Instances.probs``):
- ``"damage"``: ``(N, n_damage + 1)`` softmax; columns 0..n_damage-1 follow
  ``taxonomy.head_index``, the last column is no-object. Sums to 1.
- ``"part"``: ``(N, n_part + 1)`` softmax, same layout. Sums to 1.
- ``"fake"``: ``(N, n_fake)`` independent sigmoids (fakes can co-occur).
Embeddings: the decoder's query vector per instance, the mean encoder token per image.

torch and the network modules (``model``, ``data``, ``optim``, ``priors``) are imported
inside the methods, so the registry can ask this class what it can do cheaply.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.geometry import mask_to_shape, masks_iou_matrix
from core.instances import ImageResult, Instances
from core.taxonomy import GROUPS, Taxonomy, default_taxonomy
from models.albert.config import AlbertConfig
from models.base import OutPath, TrainResult, end_epoch, resolve_device, taxonomy_counts
from models.data import Progress, TrainingSet, check_images
from models.registry import register_stage
from models.torch_stage import TorchStage

if TYPE_CHECKING:
    import torch


@register_stage("albert")
class AlbertStage(TorchStage):
    config_class = AlbertConfig
    title = "ALBERT"
    primary_metrics = ("holdout.damage.macro_f1", "holdout.part.macro_f1")
    embedding_rank = 0
    pre_annotate_minimum = ("holdout.damage.coco.AP50", 0.2)
    module_attr = "model"
    architecture = "ALBERT's architecture"
    start_weight_fields = ("vit_weights",)
    start_weight_kind = "vit"
    #: ALBERT has all three heads
    eval_groups = GROUPS

    def __init__(self, config: AlbertConfig | None = None, taxonomy: Taxonomy | None = None):
        import torch

        from models.albert.model import AlbertModel

        self.config = config or AlbertConfig.from_preset()
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
    def fit(
        self, dataset: TrainingSet, cfg: AlbertConfig, progress: Progress | None, out_path: OutPath
    ) -> TrainResult:
        import torch

        from models.albert.data import record_target, target_to, to_input
        from models.albert.losses import albert_loss
        from models.albert.optim import param_groups, warmup_cosine

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
                    target_to(
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
            end_epoch(history, ep, epoch, cfg.epochs, progress)
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
        import torch
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
    def forward_images(self, images: list[np.ndarray]) -> dict[str, torch.Tensor]:
        import torch

        from models.albert.data import to_input

        with torch.inference_mode():
            x = torch.stack([to_input(im, self.config.image_size) for im in images])
            x = x.to(self.device)
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

        from models.albert.priors import gaussian_prior, part_prior_boost

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
            cids.append(self.taxonomy.class_at(GROUPS[head[i]], idx).id)
        kept_a = np.asarray(kept, dtype=np.int64)
        inst = Instances(
            shapes=shapes,
            class_ids=np.asarray(cids, dtype=np.int64),
            scores=scores[kept_a],
            probs={"damage": pd[kept_a], "fake": pf[kept_a], "part": pp[kept_a]},
            embeddings=out["queries"].numpy()[kept_a],
        )
        return ImageResult(inst, image_embedding=out["image"].numpy(), meta={"stage": self.name})

    # -- files (TorchStage's save/load) ------------------------------------------------
    def checkpoint_extra(self) -> dict[str, Any]:
        return {"taxonomy": self.taxonomy.as_list()}
