"""The project's classes, grouped, for the class picker."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api.deps import current_project, require
from api.schemas import TaxonomyOut
from db.models import Project, User
from services.accounts.projects import project_taxonomy
from services.accounts.users import Permission

router = APIRouter(tags=["taxonomy"])


@router.get("/taxonomy")
def taxonomy(
    user: User = Depends(require(Permission.view)), project: Project = Depends(current_project)
) -> TaxonomyOut:
    """``{"classes": [{id, name, group, display_name, color}, ...], "counts": {group: n}}``."""
    tax = project_taxonomy(project)
    return TaxonomyOut.model_validate({"classes": tax.as_list(), "counts": tax.counts()})
