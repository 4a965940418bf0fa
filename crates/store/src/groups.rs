//! Service groups: their published ports and the instances in them.

use weft_model::services::Handler;

use crate::{Store, StoreError};

/// A service group by uuid and name, as an instance refers to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRef {
    pub uuid: String,
    pub name: String,
}

/// An instance by uuid and name, as a group lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub uuid: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceGroup {
    pub uuid: String,
    pub account: String,
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The instance whose create made the group, when it was made inline.
    pub created_for: Option<String>,
    pub services: Vec<Service>,
    /// The instances in the group, by name.
    pub instances: Vec<Member>,
}

/// A published port of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub port: u16,
    pub destination_port: u16,
    pub handlers: Vec<Handler>,
}

#[derive(sqlx::FromRow)]
struct GroupRow {
    uuid: String,
    account: String,
    name: String,
    created_at: String,
    created_for: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ServiceRow {
    service_group: String,
    port: i64,
    destination_port: i64,
    handlers: String,
}

impl ServiceRow {
    fn into_service(self) -> Result<Service, StoreError> {
        let corrupt = || StoreError::Corrupt {
            column: "handlers",
            value: self.handlers.clone(),
        };
        let names: Vec<String> = serde_json::from_str(&self.handlers).map_err(|_| corrupt())?;
        let handlers = names
            .iter()
            .map(|n| Handler::parse(n).ok_or_else(corrupt))
            .collect::<Result<_, _>>()?;
        Ok(Service {
            port: self.port as u16,
            destination_port: self.destination_port as u16,
            handlers,
        })
    }
}

impl Store {
    /// Writes a new group with its services; with `member`, that instance joins it in the
    /// same transaction.
    pub async fn insert_group(
        &self,
        group: &ServiceGroup,
        member: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO service_groups (uuid, account, name, created_at, created_for) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&group.uuid)
        .bind(&group.account)
        .bind(&group.name)
        .bind(&group.created_at)
        .bind(&group.created_for)
        .execute(&mut *tx)
        .await
        .map_err(conflict)?;
        for (idx, service) in group.services.iter().enumerate() {
            let handlers: Vec<&str> = service.handlers.iter().map(|h| h.as_str()).collect();
            sqlx::query(
                "INSERT INTO services (service_group, idx, port, destination_port, handlers) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&group.uuid)
            .bind(idx as i64)
            .bind(i64::from(service.port))
            .bind(i64::from(service.destination_port))
            .bind(serde_json::to_string(&handlers).expect("strings serialize"))
            .execute(&mut *tx)
            .await
            .map_err(conflict)?;
        }
        if let Some(instance) = member {
            join(&mut tx, instance, &group.uuid).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Puts an instance into a group of its account. Returns false when the group is gone.
    pub async fn join_group(&self, instance: &str, group: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let joined = join(&mut tx, instance, group).await?;
        tx.commit().await?;
        Ok(joined)
    }

    /// All groups of an account (or of all accounts with `None`), oldest first.
    pub async fn list_groups(
        &self,
        account: Option<&str>,
    ) -> Result<Vec<ServiceGroup>, StoreError> {
        let rows = sqlx::query_as::<_, GroupRow>(
            "SELECT * FROM service_groups WHERE ?1 IS NULL OR account = ?1 \
             ORDER BY created_at, uuid",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        let services = sqlx::query_as::<_, ServiceRow>(
            "SELECT s.* FROM services s JOIN service_groups g ON s.service_group = g.uuid \
             WHERE ?1 IS NULL OR g.account = ?1 ORDER BY s.service_group, s.idx",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| {
            let group = row.service_group.clone();
            row.into_service().map(|service| (group, service))
        })
        .collect::<Result<Vec<_>, _>>()?;
        let members: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT service_group, uuid, name FROM instances \
             WHERE service_group IS NOT NULL AND (?1 IS NULL OR account = ?1) ORDER BY name",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?;

        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let services = services
                .iter()
                .filter(|(group, _)| *group == row.uuid)
                .map(|(_, service)| service.clone())
                .collect();
            let instances = members
                .iter()
                .filter(|(group, _, _)| *group == row.uuid)
                .map(|(_, uuid, name)| Member {
                    uuid: uuid.clone(),
                    name: name.clone(),
                })
                .collect();
            out.push(ServiceGroup {
                uuid: row.uuid,
                account: row.account,
                name: row.name,
                created_at: row.created_at,
                created_for: row.created_for,
                services,
                instances,
            });
        }
        Ok(out)
    }

    /// The account's group with this uuid or name.
    pub async fn find_group(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Option<ServiceGroup>, StoreError> {
        let groups = self.list_groups(Some(account)).await?;
        let by_uuid = groups.iter().position(|g| g.uuid == id);
        let found = by_uuid.or_else(|| groups.iter().position(|g| g.name == id));
        Ok(found.map(|i| groups.into_iter().nth(i).expect("found index")))
    }

    /// Whether the account has a group of this name.
    pub async fn group_name_taken(&self, account: &str, name: &str) -> Result<bool, StoreError> {
        let found: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM service_groups WHERE account = ? AND name = ?")
                .bind(account)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// The group (uuid, name, account) that publishes `port` on this host, if any.
    pub async fn group_on_port(
        &self,
        port: u16,
    ) -> Result<Option<(String, String, String)>, StoreError> {
        let found = sqlx::query_as(
            "SELECT g.uuid, g.name, g.account FROM services s \
             JOIN service_groups g ON s.service_group = g.uuid WHERE s.port = ?",
        )
        .bind(i64::from(port))
        .fetch_optional(&self.pool)
        .await?;
        Ok(found)
    }

    /// Deletes a group and its services. A group that instances are in is refused with a
    /// conflict.
    pub async fn delete_group(&self, uuid: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM service_groups WHERE uuid = ?")
            .bind(uuid)
            .execute(&self.pool)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                    StoreError::Conflict {
                        what: "service group",
                    }
                }
                _ => StoreError::Db(e),
            })?;
        Ok(())
    }
}

async fn join(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    instance: &str,
    group: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE instances SET service_group = ?1, \
         service_group_name = (SELECT name FROM service_groups WHERE uuid = ?1) \
         WHERE uuid = ?2 AND account = (SELECT account FROM service_groups WHERE uuid = ?1)",
    )
    .bind(group)
    .bind(instance)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Turns a uniqueness violation into a conflict naming what clashed.
fn conflict(err: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() {
            let what = if db.message().contains("services.port") {
                "port"
            } else if db
                .message()
                .contains("service_groups.account, service_groups.name")
            {
                "service group name"
            } else {
                "a unique value"
            };
            return StoreError::Conflict { what };
        }
    }
    StoreError::Db(err)
}
