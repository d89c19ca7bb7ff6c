//! Users, for administrators: who may use the API in their municipalities, and locking
//! someone out. Users are created from the command line (`cityhub users add`), where the
//! password is typed and never passes through an HTTP body or a log.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use store::UserRow;
use utoipa::{IntoParams, ToSchema};

use crate::caller::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiPath, ApiQuery};
use crate::roles::{Permission, Role};
use crate::AppState;

/// A user as administrators see them.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub username: String,
    pub role: Role,
    /// For crew: the team whose work orders they move.
    pub team: Option<String>,
    /// The municipalities (slugs) they may see.
    pub tenants: Vec<String>,
    /// A disabled user cannot sign in, and their sessions and tokens do not work.
    pub disabled: bool,
}

impl TryFrom<UserRow> for User {
    type Error = ApiError;

    fn try_from(u: UserRow) -> Result<User, ApiError> {
        Ok(User {
            username: u.username,
            role: u.role,
            team: u.team,
            tenants: u.tenants.into_iter().map(|t| t.slug).collect(),
            disabled: u.disabled,
        })
    }
}

/// Which users to list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserFilter {
    /// A tenant slug (one of the caller's); all of them when absent.
    pub tenant: Option<String>,
}

/// The users of the caller's municipalities, by name.
#[utoipa::path(
    get,
    path = "/users",
    operation_id = "list_users",
    tag = "users",
    params(UserFilter),
    responses(
        (status = 200, description = "The users", body = Vec<User>),
        (status = 400, description = "A filter is not valid", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Only administrators manage users", body = ErrorBody),
        (status = 404, description = "The tenant named is not one of the caller's", body = ErrorBody)
    )
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(f): ApiQuery<UserFilter>,
) -> Result<Json<Vec<User>>, ApiError> {
    caller.require(Permission::ManageUsers)?;
    let tenants = caller.scope(f.tenant.as_deref())?;
    let users = state.pool().access().await?.users_in(&tenants).await?;
    Ok(Json(
        users
            .into_iter()
            .map(User::try_from)
            .collect::<Result<_, _>>()?,
    ))
}

async fn set_disabled(
    state: &AppState,
    caller: &Caller,
    username: &str,
    disabled: bool,
) -> Result<Json<User>, ApiError> {
    caller.require(Permission::ManageUsers)?;
    if disabled && username == caller.username {
        return Err(ApiError::conflict(
            "you cannot disable yourself; another administrator can",
        ));
    }
    let tenants = caller.scope(None)?;
    let user = state
        .pool()
        .access()
        .await?
        .set_user_disabled(username, disabled, &tenants, &caller.actor())
        .await?;
    Ok(Json(User::try_from(user)?))
}

/// Locks a user out: sessions end at once, sign-in and API tokens are refused.
#[utoipa::path(
    post,
    path = "/users/{username}/disable",
    operation_id = "disable_user",
    tag = "users",
    params(("username" = String, Path, description = "The user")),
    responses(
        (status = 200, description = "Disabled", body = User),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an administrator, or the user also works for municipalities the caller does not administer", body = ErrorBody),
        (status = 404, description = "No such user in the caller's municipalities", body = ErrorBody),
        (status = 409, description = "Administrators cannot disable themselves", body = ErrorBody)
    )
)]
pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<User>, ApiError> {
    set_disabled(&state, &caller, &username, true).await
}

/// Lets a disabled user in again.
#[utoipa::path(
    post,
    path = "/users/{username}/enable",
    operation_id = "enable_user",
    tag = "users",
    params(("username" = String, Path, description = "The user")),
    responses(
        (status = 200, description = "Enabled", body = User),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not an administrator, or the user also works for municipalities the caller does not administer", body = ErrorBody),
        (status = 404, description = "No such user in the caller's municipalities", body = ErrorBody)
    )
)]
pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<User>, ApiError> {
    set_disabled(&state, &caller, &username, false).await
}
