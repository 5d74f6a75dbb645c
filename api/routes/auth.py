"""Sign in and out; who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel
from sqlmodel import Session

from api.deps import current_project, current_user, db_session, request_token, service_errors
from api.schemas import LoginAnswer, Me, RecentClasses, Revoked
from db.models import Project, User
from services.accounts import projects as project_service
from services.accounts import recent_classes as recent_service
from services.accounts import users as user_service
from services.labelling import leases as lease_service

router = APIRouter(tags=["auth"])


class LoginBody(BaseModel):
    username: str
    password: str


@router.post(
    "/login", responses={429: {"description": "too many failed sign-ins; see Retry-After"}}
)
def login(body: LoginBody, request: Request, session: Session = Depends(db_session)) -> LoginAnswer:
    """Exchange a user name and password for a bearer token. Repeated failures for a name or
    from an address lock it out for a while (429 with ``Retry-After``)."""
    address = request.client.host if request.client else None
    with service_errors():
        user = user_service.authenticate(session, body.username, body.password, address=address)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Wrong user name or password.")
    token = user_service.issue_token(session, user)
    return LoginAnswer(
        token=token,
        username=user.username,
        role=user.role.value,
        permissions=sorted(user_service.permissions(user.role)),
    )


@router.post("/logout")
def logout(
    request: Request, user: User = Depends(current_user), session: Session = Depends(db_session)
) -> Revoked:
    """Revoke the token this request was made with."""
    return Revoked(revoked=lease_service.sign_out(session, request_token(request)))


@router.get("/me")
def me(user: User = Depends(current_user), session: Session = Depends(db_session)) -> Me:
    """Who the token belongs to, what its role may do, and the projects it may work in."""
    return Me(
        username=user.username,
        role=user.role.value,
        permissions=sorted(user_service.permissions(user.role)),
        **project_service.membership_summary(session, user),
    )


@router.get("/me/recent-classes")
def get_recent_classes(
    user: User = Depends(current_user), project: Project = Depends(current_project)
) -> RecentClasses:
    """The classes the caller picked last, most recent first, in whichever browser."""
    taxonomy = project_service.project_taxonomy(project)
    return RecentClasses(class_ids=recent_service.recent_classes(user, taxonomy))


@router.put("/me/recent-classes")
def put_recent_classes(
    body: RecentClasses,
    user: User = Depends(current_user),
    project: Project = Depends(current_project),
    session: Session = Depends(db_session),
) -> RecentClasses:
    """Replace the caller's recent classes (most recent first); repeats are dropped and the
    list is cut to the ``recent_classes_max`` setting. 422 for a class the taxonomy lacks."""
    taxonomy = project_service.project_taxonomy(project)
    with service_errors():
        kept = recent_service.set_recent_classes(session, user, body.class_ids, taxonomy)
    return RecentClasses(class_ids=kept)
