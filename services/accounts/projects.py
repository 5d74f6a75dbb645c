"""Projects, the taxonomy each one uses, and who may work in which.

A server serves one project (``Settings.project_name``). Admins may work in every project;
any other user only in the projects they are a member of (``db.models.ProjectMember``). The
REST API (``api.deps.current_project``), the Gradio handlers and the CLI all ask
:func:`served_project` or :func:`require_member`, so the rule is written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from sqlalchemy import delete
from sqlmodel import Session, select

from core.config import get_settings
from core.taxonomy import Taxonomy, load_taxonomy
from db.models import Project, ProjectMember, Role, User
from services.errors import Forbidden, NotFound


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


# ---------- membership ----------


def list_projects(session: Session) -> list[Project]:
    """Every project, by name."""
    return list(session.exec(select(Project).order_by(Project.name)).all())


def find_project(session: Session, name: str) -> Project:
    """The project called ``name``; the served project is created when it is new. Raises
    NotFound naming the projects that exist for any other unknown name."""
    if name == get_settings().project_name:
        return get_or_create_project(session)
    project = session.exec(select(Project).where(Project.name == name)).first()
    if project is None:
        known = ", ".join(p.name for p in list_projects(session)) or "none yet"
        raise NotFound(
            f"No project named {name!r} (projects: {known}). A project is created by the first "
            f"server or command that serves it, e.g. `panelbeater --project {name} import folder DIR`."
        )
    return project


#: ``session.info`` key: (project id, user id) -> whether the user is a member.
_MEMBERSHIP = "project_membership"


def is_member(session: Session, user: User, project: Project) -> bool:
    """Whether ``user`` may work in ``project``: admins everywhere, others where they are members."""
    if user.role == Role.admin:
        return True
    # Asked several times per request (the route's project, then each service it calls):
    # remembered for the session, which add_member and remove_member keep true.
    known = session.info.setdefault(_MEMBERSHIP, {})
    key = (project.id, user.id)
    if key not in known:
        known[key] = session.get(ProjectMember, key) is not None
    return known[key]


def _admin_names(session: Session) -> list[str]:
    stmt = (
        select(User.username)
        .where(User.role == Role.admin, User.active == True)  # noqa: E712
        .order_by(User.username)
    )
    return list(session.exec(stmt).all())


def require_member(session: Session, user: User, project: Project) -> None:
    """Raise Forbidden, saying which project and who can add the user, unless ``user`` may
    work in ``project`` (:func:`is_member`)."""
    if is_member(session, user, project):
        return
    admins = _admin_names(session)
    who = f"an admin ({', '.join(admins[:3])}{', ...' if len(admins) > 3 else ''})"
    raise Forbidden(
        f"You ({user.username}) are not a member of project {project.name!r}. Ask "
        f"{who if admins else 'an admin'} to add you: `panelbeater user join {user.username} "
        f"--project {project.name}`, or the Users area of the dashboard."
    )


def served_project(session: Session, user: User) -> Project:
    """The project this server serves, once :func:`require_member` lets ``user`` in."""
    project = get_or_create_project(session)
    require_member(session, user, project)
    return project


def user_projects(session: Session, user: User) -> list[Project]:
    """The projects ``user`` may work in, by name (every project for an admin)."""
    if user.role == Role.admin:
        return list_projects(session)
    stmt = (
        select(Project)
        .join(ProjectMember, ProjectMember.project_id == Project.id)
        .where(ProjectMember.user_id == user.id)
        .order_by(Project.name)
    )
    return list(session.exec(stmt).all())


def member_project_names(session: Session, user: User) -> list[str]:
    """The names of the projects ``user`` is a member of (rows only; admins need none)."""
    stmt = (
        select(Project.name)
        .join(ProjectMember, ProjectMember.project_id == Project.id)
        .where(ProjectMember.user_id == user.id)
        .order_by(Project.name)
    )
    return list(session.exec(stmt).all())


def add_member(session: Session, user: User, project: Project) -> bool:
    """Make ``user`` a member of ``project``; False when they already were."""
    session.info.pop(_MEMBERSHIP, None)
    if session.get(ProjectMember, (project.id, user.id)) is not None:
        return False
    session.add(ProjectMember(project_id=project.id, user_id=user.id))
    session.flush()
    return True


def remove_member(session: Session, user: User, project: Project) -> bool:
    """End ``user``'s membership of ``project``; False when they were not a member."""
    session.info.pop(_MEMBERSHIP, None)
    result = session.execute(
        delete(ProjectMember).where(
            ProjectMember.project_id == project.id, ProjectMember.user_id == user.id
        )
    )
    session.flush()
    return bool(result.rowcount)


def set_member_projects(session: Session, user: User, names: Sequence[str]) -> list[str]:
    """Make ``user`` a member of exactly the projects ``names`` (each must exist, or be the
    served one); returns the names, sorted. Nothing changes when a name is unknown."""
    session.info.pop(_MEMBERSHIP, None)
    wanted = {p.id: p for p in (find_project(session, n) for n in dict.fromkeys(names))}
    current = set(
        session.exec(select(ProjectMember.project_id).where(ProjectMember.user_id == user.id))
    )
    for project_id in current - set(wanted):
        session.execute(
            delete(ProjectMember).where(
                ProjectMember.project_id == project_id, ProjectMember.user_id == user.id
            )
        )
    for project_id in set(wanted) - current:
        session.add(ProjectMember(project_id=project_id, user_id=user.id))
    session.flush()
    return sorted(p.name for p in wanted.values())


def membership_summary(session: Session, user: User) -> dict[str, object]:
    """``{"project", "projects"}``: the served project's name when ``user`` may work in it
    (else None), and every project ``user`` may work in."""
    served = get_or_create_project(session)
    return {
        "project": served.name if is_member(session, user, served) else None,
        "projects": [p.name for p in user_projects(session, user)],
    }
