//! Users, the tenants they may see, browser sessions and API tokens.
//!
//! Only digests are stored: the Argon2 PHC string of a password, the keyed hash of a
//! session token and the SHA-256 of an API token. Hashing is the caller's (`api::auth`):
//! this module stores and looks up. Creating users and tokens is audited in the same
//! transaction.

use crate::handles::{Access, Admin};
use chrono::{DateTime, Utc};
use model::Role;
use serde_json::json;
use tokio_postgres::error::SqlState;
use tokio_postgres::{GenericClient, Row};

use crate::audit::{append, AuditEntry};
use crate::error::named;
use crate::StoreError;

/// A tenant as a user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRef {
    pub id: i32,
    pub slug: String,
}

/// A user and what they may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub role: Role,
    /// For crew: the team whose work orders they move.
    pub team: Option<String>,
    pub disabled: bool,
    /// Sorted by slug.
    pub tenants: Vec<TenantRef>,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub username: &'a str,
    /// An Argon2 PHC string.
    pub password_hash: &'a str,
    pub role: &'a str,
    pub team: Option<&'a str>,
    /// Tenant slugs; each must exist.
    pub tenants: &'a [String],
}

/// The columns of a user with their tenants (`u` the users row), as [`user`] reads them.
macro_rules! user_columns {
    () => {
        "u.id, u.username, u.role, u.team, u.disabled,
        coalesce(array_agg(t.id ORDER BY t.slug) FILTER (WHERE t.id IS NOT NULL), '{}'),
        coalesce(array_agg(t.slug ORDER BY t.slug) FILTER (WHERE t.id IS NOT NULL), '{}')"
    };
}

/// The joins [`user_columns`] reads a user's tenants through.
macro_rules! user_tenants {
    () => {
        "LEFT JOIN user_tenants ut ON ut.user_id = u.id
    LEFT JOIN tenants t ON t.id = ut.tenant_id"
    };
}

/// A user with their tenants.
const USER_SELECT: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users u ",
    user_tenants!()
);

/// The user of an API token that is neither revoked nor of a disabled user, then the
/// token's id, its name and whether its last use is worth writing down again: every
/// request with a token signs in with this one statement.
const TOKEN_USER: &str = concat!(
    "SELECT ",
    user_columns!(),
    ", a.id, a.name, a.last_used_at IS NULL OR a.last_used_at < now() - interval '1 minute'
    FROM users u JOIN api_tokens a ON a.user_id = u.id ",
    user_tenants!(),
    " WHERE a.token_hash = $1 AND NOT a.revoked AND NOT u.disabled GROUP BY u.id, a.id"
);

/// The user of a live session who is not disabled, in one statement as [`TOKEN_USER`].
const SESSION_USER: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users u JOIN sessions s ON s.user_id = u.id ",
    user_tenants!(),
    " WHERE s.token_hash = $1 AND s.expires_at > $2 AND NOT u.disabled GROUP BY u.id"
);

const USER_GROUP: &str = "GROUP BY u.id";

fn user(r: &Row) -> Result<UserRow, StoreError> {
    let ids: Vec<i32> = r.get(5);
    let slugs: Vec<String> = r.get(6);
    Ok(UserRow {
        id: r.get(0),
        username: r.get(1),
        role: named(r, 2, "role", Role::parse)?,
        team: r.get(3),
        disabled: r.get(4),
        tenants: ids
            .into_iter()
            .zip(slugs)
            .map(|(id, slug)| TenantRef { id, slug })
            .collect(),
    })
}

async fn user_where(
    client: &impl GenericClient,
    condition: &str,
    param: &(dyn tokio_postgres::types::ToSql + Sync),
) -> Result<Option<UserRow>, StoreError> {
    let row = client
        .query_opt(
            &format!("{USER_SELECT} WHERE {condition} {USER_GROUP}"),
            &[param],
        )
        .await
        .map_err(StoreError::db("reading a user"))?;
    row.as_ref().map(user).transpose()
}

impl Admin {
    /// Creates a user with their tenants; audited as `user.add` by `actor`.
    pub async fn add_user(
        &mut self,
        new: &NewUser<'_>,
        actor: &str,
    ) -> Result<UserRow, StoreError> {
        check_user(new.username, new.role, new.team)?;
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting to add a user"))?;
        let tenant_ids = tenant_ids(&tx, new.tenants).await?;
        let id: i64 = match tx
            .query_one(
                "INSERT INTO users (username, password_hash, role, team) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&new.username, &new.password_hash, &new.role, &new.team],
            )
            .await
        {
            Ok(row) => row.get(0),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(StoreError::UserExists(new.username.to_owned()))
            }
            Err(e) => return Err(StoreError::db("adding a user")(e)),
        };
        tx.execute(
            "INSERT INTO user_tenants (user_id, tenant_id) SELECT $1, unnest($2::int4[])",
            &[&id, &tenant_ids],
        )
        .await
        .map_err(StoreError::db("giving a user their tenants"))?;
        append(
            &tx,
            &AuditEntry {
                actor: actor.to_owned(),
                action: "user.add".into(),
                target: format!("user/{}", new.username),
                detail: json!({"role": new.role, "team": new.team, "tenants": new.tenants}),
            },
        )
        .await?;
        let row = user_where(&tx, "u.id = $1", &id)
            .await?
            .ok_or_else(|| StoreError::UnknownUser(new.username.to_owned()))?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a new user"))?;
        Ok(row)
    }

    /// Records a new API token of `username` named `name` (its SHA-256 only); audited as
    /// `token.create` by `actor`. A user has one live token per name.
    pub async fn add_api_token(
        &mut self,
        username: &str,
        name: &str,
        token_hash: &[u8],
        actor: &str,
    ) -> Result<i64, StoreError> {
        if !valid_name(name) || name.contains('@') {
            return Err(StoreError::BadTokenName(name.to_owned()));
        }
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting to add a token"))?;
        let user = user_where(&tx, "u.username = $1", &username)
            .await?
            .ok_or_else(|| StoreError::UnknownUser(username.to_owned()))?;
        let id: i64 = match tx
            .query_one(
                "INSERT INTO api_tokens (token_hash, user_id, name) VALUES ($1, $2, $3) RETURNING id",
                &[&token_hash, &user.id, &name],
            )
            .await
        {
            Ok(row) => row.get(0),
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(StoreError::TokenExists {
                    username: username.to_owned(),
                    name: name.to_owned(),
                })
            }
            Err(e) => return Err(StoreError::db("adding a token")(e)),
        };
        append(
            &tx,
            &AuditEntry {
                actor: actor.to_owned(),
                action: "token.create".into(),
                target: format!("user/{username}"),
                detail: json!({"token": name, "token_id": id}),
            },
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a new token"))?;
        Ok(id)
    }

    /// Revokes the live token `name` of `username`; audited as `token.revoke`.
    pub async fn revoke_api_token(
        &mut self,
        username: &str,
        name: &str,
        actor: &str,
    ) -> Result<(), StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting to revoke a token"))?;
        let revoked = tx
            .query_opt(
                "UPDATE api_tokens a SET revoked = true FROM users u
                 WHERE u.id = a.user_id AND u.username = $1 AND a.name = $2 AND NOT a.revoked
                 RETURNING a.id",
                &[&username, &name],
            )
            .await
            .map_err(StoreError::db("revoking a token"))?
            .ok_or_else(|| StoreError::NoToken {
                username: username.to_owned(),
                name: name.to_owned(),
            })?;
        let id: i64 = revoked.get(0);
        append(
            &tx,
            &AuditEntry {
                actor: actor.to_owned(),
                action: "token.revoke".into(),
                target: format!("user/{username}"),
                detail: json!({"token": name, "token_id": id}),
            },
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a revocation"))
    }

    /// Tenant ids by slug, in the order given; an unknown slug is an error naming it.
    pub async fn tenant_ids(&self, slugs: &[String]) -> Result<Vec<i32>, StoreError> {
        tenant_ids(self.client(), slugs).await
    }
}

impl Access {
    /// A user and their password hash, for signing in; `None` when there is no such user.
    pub async fn user_credentials(
        &self,
        username: &str,
    ) -> Result<Option<(UserRow, String)>, StoreError> {
        let Some(user) = user_where(self.client(), "u.username = $1", &username).await? else {
            return Ok(None);
        };
        let hash: String = self
            .client()
            .query_one("SELECT password_hash FROM users WHERE id = $1", &[&user.id])
            .await
            .map_err(StoreError::db("reading a password hash"))?
            .get(0);
        Ok(Some((user, hash)))
    }

    /// Starts a browser session of `user` (its token's keyed hash) until `expires_at`;
    /// audited as `session.login` with the client's address. Sessions that ended are
    /// cleared on the way, so the table holds live sessions only.
    pub async fn create_session(
        &mut self,
        token_hash: &[u8],
        user: &UserRow,
        expires_at: DateTime<Utc>,
        address: Option<String>,
    ) -> Result<(), StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting a session"))?;
        tx.execute("DELETE FROM sessions WHERE expires_at < now()", &[])
            .await
            .map_err(StoreError::db("clearing ended sessions"))?;
        tx.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
            &[&token_hash, &user.id, &expires_at],
        )
        .await
        .map_err(StoreError::db("starting a session"))?;
        append(
            &tx,
            &AuditEntry {
                actor: user.username.clone(),
                action: "session.login".into(),
                target: format!("user/{}", user.username),
                detail: json!({ "address": address }),
            },
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a session"))
    }

    /// The user of a live session, unless they were disabled.
    pub async fn session_user(
        &self,
        token_hash: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Option<UserRow>, StoreError> {
        let row = self
            .query_opt_cached(SESSION_USER, &[&token_hash, &now])
            .await
            .map_err(StoreError::db("reading a session"))?;
        row.as_ref().map(user).transpose()
    }

    /// Ends a session of `username`; audited as `session.logout`. Ending one that does
    /// not exist (any more) is not an error, and is not audited.
    pub async fn end_session(
        &mut self,
        token_hash: &[u8],
        username: &str,
    ) -> Result<(), StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("ending a session"))?;
        let ended = tx
            .execute("DELETE FROM sessions WHERE token_hash = $1", &[&token_hash])
            .await
            .map_err(StoreError::db("ending a session"))?;
        if ended > 0 {
            append(
                &tx,
                &AuditEntry {
                    actor: username.to_owned(),
                    action: "session.logout".into(),
                    target: format!("user/{username}"),
                    detail: json!({}),
                },
            )
            .await?;
        }
        tx.commit()
            .await
            .map_err(StoreError::db("committing the end of a session"))
    }

    /// The users who work for at least one of `tenants`, by name.
    pub async fn users_in(&self, tenants: &[i32]) -> Result<Vec<UserRow>, StoreError> {
        let rows = self
            .client()
            .query(
                &format!(
                    "{USER_SELECT}
                     WHERE u.id IN (SELECT user_id FROM user_tenants WHERE tenant_id = ANY($1))
                     {USER_GROUP} ORDER BY u.username"
                ),
                &[&tenants],
            )
            .await
            .map_err(StoreError::db("listing users"))?;
        rows.iter().map(user).collect()
    }

    /// Disables (or enables again) `username`, who must work for `tenants` only: a user
    /// shared with a municipality the actor does not administer is not theirs alone to
    /// lock out. Disabling ends the user's sessions at once; their API tokens stop
    /// working while they are disabled. Audited as `user.disable` or `user.enable`.
    pub async fn set_user_disabled(
        &mut self,
        username: &str,
        disabled: bool,
        tenants: &[i32],
        actor: &str,
    ) -> Result<UserRow, StoreError> {
        let tx = self
            .client_mut()
            .transaction()
            .await
            .map_err(StoreError::db("starting a user change"))?;
        let found = user_where(&tx, "u.username = $1", &username).await?;
        let Some(found) = found.filter(|u| u.tenants.iter().any(|t| tenants.contains(&t.id)))
        else {
            return Err(StoreError::UnknownUser(username.to_owned()));
        };
        if found.tenants.iter().any(|t| !tenants.contains(&t.id)) {
            return Err(StoreError::UserBeyondTenants(username.to_owned()));
        }
        tx.execute(
            "UPDATE users SET disabled = $2 WHERE id = $1",
            &[&found.id, &disabled],
        )
        .await
        .map_err(StoreError::db("changing a user"))?;
        if disabled {
            tx.execute("DELETE FROM sessions WHERE user_id = $1", &[&found.id])
                .await
                .map_err(StoreError::db("ending a user's sessions"))?;
        }
        append(
            &tx,
            &AuditEntry {
                actor: actor.to_owned(),
                action: if disabled {
                    "user.disable"
                } else {
                    "user.enable"
                }
                .into(),
                target: format!("user/{username}"),
                detail: json!({}),
            },
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a user change"))?;
        Ok(UserRow { disabled, ..found })
    }

    /// The user of a live API token and the token's name, unless the user is disabled.
    /// Notes when the token was used, at most once a minute so that a busy program does
    /// not turn every read into a write.
    pub async fn token_user(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<(UserRow, String)>, StoreError> {
        let row = self
            .query_opt_cached(TOKEN_USER, &[&token_hash])
            .await
            .map_err(StoreError::db("reading a token"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (token_id, name, stale): (i64, String, bool) = (row.get(7), row.get(8), row.get(9));
        if stale {
            self.client()
                .execute(
                    "UPDATE api_tokens SET last_used_at = now() WHERE id = $1",
                    &[&token_id],
                )
                .await
                .map_err(StoreError::db("noting a token's use"))?;
        }
        Ok(Some((user(&row)?, name)))
    }
}

/// Refuses a user the `users` table would refuse, with a reason: an unknown role, a name
/// that is not 1 to 64 of letters, digits and `_ . @ -`, a crew member without a team.
/// (Callers check before asking for a password.)
pub fn check_user(username: &str, role: &str, team: Option<&str>) -> Result<(), StoreError> {
    let Some(role) = Role::parse(role) else {
        return Err(StoreError::UnknownRole(role.to_owned()));
    };
    if !valid_name(username) {
        return Err(StoreError::BadUsername(username.to_owned()));
    }
    if role == Role::Crew && team.is_none() {
        return Err(StoreError::CrewWithoutTeam(username.to_owned()));
    }
    Ok(())
}

/// Whether a user or token name is 1 to 64 letters, digits and `_ . @ -` (as the table's
/// check says; `@` for user names only).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'))
}

async fn tenant_ids(client: &impl GenericClient, slugs: &[String]) -> Result<Vec<i32>, StoreError> {
    let mut ids = Vec::with_capacity(slugs.len());
    for slug in slugs {
        let row = client
            .query_opt("SELECT id FROM tenants WHERE slug = $1", &[slug])
            .await
            .map_err(StoreError::db("looking up a tenant"))?
            .ok_or_else(|| StoreError::UnknownTenant(slug.clone()))?;
        ids.push(row.get(0));
    }
    Ok(ids)
}
