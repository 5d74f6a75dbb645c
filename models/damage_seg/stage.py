"""The registered ``damage_seg`` stage: the shared LRASPP segmenter
(:class:`models.semseg.stage.SemanticSegStage`) over background + the taxonomy's damage
classes + its fake-damage classes.

It predicts only the classes it saw labelled (``learns_classes``): a project's first version
knows the damage types its annotators drew, and the fake-damage classes once some are labelled;
the others are never predicted, and its training figures name them
(``unpredicted_classes``) for the dashboard. It trains on ``crop`` windows of a ``size``
photo, most of them centred on labelled damage, and predicts on the whole photo.
"""

from __future__ import annotations

from models.damage_seg.config import DamageSegConfig
from models.registry import register_stage
from models.semseg.stage import SemanticSegStage


@register_stage("damage_seg")
class DamageSegStage(SemanticSegStage):
    config_class = DamageSegConfig
    title = "LRASPP-MobileNetV3 damage segmenter"
    primary_metrics = ("holdout.damage.coco.AP50", "holdout.damage.miou")
    #: the damage models it replaces when it promotes (the strongest promoted one)
    rival = ("albert", "mask_rcnn")
    pre_annotate_minimum = ("holdout.damage.coco.AP50", 0.2)
    #: each damage instance says which part it sits on, from this part stage's promoted
    #: version, else its rival's (``data["part"]``)
    parts_from = "part_seg"
    architecture = "LRASPP-MobileNetV3-Large (background + damage + fake-damage classes)"
    eval_groups = ("damage", "fake")
    groups = ("damage", "fake")
    learns_classes = True

    config: DamageSegConfig
