"""Interactive assistance: a box or clicks in, polygons out (``SamPredictor``-shaped).

Back ends: segment-anything ViT-B/L/H (``sam.SamAssistant``), MobileSAM through Ultralytics
(``sam.MobileSamAssistant``), the learned weight-free ``assist_net`` (``learned``), GrabCut
(``grabcut``) and the box itself as a baseline. :func:`make_assistant` picks one from the
settings. Only the back-end modules import torch/cv2/segment-anything.
"""

from models.assist.base import Assistant, AssistResult, EmbeddingCache, image_sha256
from models.assist.factory import BACKENDS, choose_backend, latest_assist_net, make_assistant

__all__ = [
    "BACKENDS",
    "AssistResult",
    "Assistant",
    "EmbeddingCache",
    "choose_backend",
    "image_sha256",
    "latest_assist_net",
    "make_assistant",
]
