"""ALBERT (after the seed paper, sections 3.2-3.7 and appendix A): a ViT encoder, a mask
neck, learned queries with a transformer decoder, a dynamic-filter mask head and damage /
fake / part heads. Needs only torch, numpy, scipy (and pycocotools for COCO AP)."""

from models.albert.config import AlbertConfig

__all__ = ["AlbertConfig"]
