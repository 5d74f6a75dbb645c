"""Projects and the taxonomy each one uses."""

from __future__ import annotations

from functools import lru_cache

from sqlmodel import Session, select

from core.config import get_settings
from core.taxonomy import Taxonomy, load_taxonomy
from db.models import Project


def get_or_create_project(session: Session, name: str | None = None) -> Project:
    """The project called ``name`` (default: the settings' project), created if new."""
    settings = get_settings()
    name = name or settings.project_name
    project = session.exec(select(Project).where(Project.name == name)).first()
    if project is None:
        taxonomy_path = str(settings.taxonomy_path) if settings.taxonomy_path else None
        load_taxonomy(taxonomy_path)  # fail before creating a project with a broken taxonomy
        project = Project(name=name, taxonomy_path=taxonomy_path)
        session.add(project)
        session.flush()
    return project


def project_taxonomy(project: Project) -> Taxonomy:
    return _taxonomy(project.taxonomy_path)


@lru_cache(maxsize=8)
def _taxonomy(path: str | None) -> Taxonomy:
    return load_taxonomy(path)
