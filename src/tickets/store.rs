//! SQL for tickets and their idempotency keys. Every function runs inside a
//! tenant transaction and also filters by `tenant_id` explicitly: RLS is the
//! second line of defence, not the only one.

use sqlx::{Arguments as _, PgConnection, Postgres, QueryBuilder, postgres::PgArguments};
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{ListFilter, OrderField, Priority, Status, Ticket};
use crate::{pagination::Cursor, tenancy::TenantId};

const COLUMNS: &str = "id, title, description, status, priority, assignee_id, reporter_id, tags, \
                       create_time, update_time, resolve_time, version";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    title: String,
    description: String,
    status: String,
    priority: String,
    assignee_id: Option<Uuid>,
    reporter_id: Uuid,
    tags: Vec<String>,
    create_time: OffsetDateTime,
    update_time: OffsetDateTime,
    resolve_time: Option<OffsetDateTime>,
    version: i64,
}

impl TryFrom<Row> for Ticket {
    type Error = sqlx::Error;
    fn try_from(r: Row) -> Result<Self, Self::Error> {
        let decode = |what: &str, v: &str| sqlx::Error::Decode(format!("unknown ticket {what} `{v}`").into());
        Ok(Ticket {
            id: r.id,
            title: r.title,
            description: r.description,
            status: Status::parse(&r.status).ok_or_else(|| decode("status", &r.status))?,
            priority: Priority::parse(&r.priority).ok_or_else(|| decode("priority", &r.priority))?,
            assignee_id: r.assignee_id,
            reporter_id: r.reporter_id,
            tags: r.tags,
            create_time: r.create_time,
            update_time: r.update_time,
            resolve_time: r.resolve_time,
            version: r.version,
        })
    }
}

/// Appends a ticket's columns, `id` to `version` in table order, to `args`.
fn ticket_args(args: &mut PgArguments, t: &Ticket) -> Result<(), sqlx::Error> {
    (|| {
        args.add(t.id)?;
        args.add(&t.title)?;
        args.add(&t.description)?;
        args.add(t.status.as_str())?;
        args.add(t.priority.as_str())?;
        args.add(t.assignee_id)?;
        args.add(t.reporter_id)?;
        args.add(&t.tags)?;
        args.add(t.create_time)?;
        args.add(t.update_time)?;
        args.add(t.resolve_time)?;
        args.add(t.version)
    })()
    .map_err(sqlx::Error::Encode)
}

/// Inserts a new ticket.
pub async fn insert(conn: &mut PgConnection, tenant: TenantId, t: &Ticket) -> Result<(), sqlx::Error> {
    let mut args = PgArguments::default();
    args.add(tenant.0).map_err(sqlx::Error::Encode)?;
    ticket_args(&mut args, t)?;
    sqlx::query_with(
        "insert into tickets (tenant_id, id, title, description, status, priority, assignee_id, reporter_id, \
                              tags, create_time, update_time, resolve_time, version) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        args,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Claims the idempotency key `(operation, request_id)` and, only when this
/// transaction claimed it, inserts the ticket: one statement, one round trip.
/// Returns whether the key was claimed (and so the ticket inserted); when not,
/// `idempotency::existing` has the first request's response.
pub async fn insert_claimed(
    conn: &mut PgConnection,
    tenant: TenantId,
    t: &Ticket,
    operation: &str,
    request_id: Uuid,
    request_hash: &[u8],
    response: &serde_json::Value,
) -> Result<bool, sqlx::Error> {
    let mut args = PgArguments::default();
    (|| {
        args.add(tenant.0)?;
        args.add(operation)?;
        args.add(request_id)?;
        args.add(request_hash)?;
        args.add(response)
    })()
    .map_err(sqlx::Error::Encode)?;
    ticket_args(&mut args, t)?;
    let claimed: bool = sqlx::query_scalar_with(
        concat!(
            "with claim as (",
            crate::claim_sql!(),
            "), ticket as (\
           insert into tickets (tenant_id, id, title, description, status, priority, assignee_id, reporter_id, \
                                tags, create_time, update_time, resolve_time, version) \
           select $1, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 where exists (select from claim) \
         ) \
         select exists (select from claim)"
        ),
        args,
    )
    .fetch_one(conn)
    .await?;
    Ok(claimed)
}

/// One ticket, optionally locked for an update in this transaction.
pub async fn get(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    lock: bool,
) -> Result<Option<Ticket>, sqlx::Error> {
    let sql = if lock {
        "select id, title, description, status, priority, assignee_id, reporter_id, tags, \
                create_time, update_time, resolve_time, version \
         from tickets where tenant_id = $1 and id = $2 for update"
    } else {
        "select id, title, description, status, priority, assignee_id, reporter_id, tags, \
                create_time, update_time, resolve_time, version \
         from tickets where tenant_id = $1 and id = $2"
    };
    let row: Option<Row> = sqlx::query_as(sql).bind(tenant.0).bind(id).fetch_optional(conn).await?;
    row.map(Ticket::try_from).transpose()
}

/// Writes every mutable field of `t`.
pub async fn update(conn: &mut PgConnection, tenant: TenantId, t: &Ticket) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update tickets set title = $3, description = $4, status = $5, priority = $6, assignee_id = $7, \
                tags = $8, update_time = $9, resolve_time = $10, version = $11 \
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant.0)
    .bind(t.id)
    .bind(&t.title)
    .bind(&t.description)
    .bind(t.status.as_str())
    .bind(t.priority.as_str())
    .bind(t.assignee_id)
    .bind(&t.tags)
    .bind(t.update_time)
    .bind(t.resolve_time)
    .bind(t.version)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes a ticket; whether it existed.
pub async fn delete(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    let res = sqlx::query("delete from tickets where tenant_id = $1 and id = $2")
        .bind(tenant.0)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(res.rows_affected() == 1)
}

/// Up to `limit` tickets after `after`, in the filter's order.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    filter: &ListFilter,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<Ticket>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("select ");
    q.push(COLUMNS)
        .push(" from tickets where tenant_id = ")
        .push_bind(tenant.0);
    if let Some(a) = filter.assignee_id {
        q.push(" and assignee_id = ").push_bind(a);
    }
    if !filter.statuses.is_empty() {
        let statuses: Vec<&'static str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        q.push(" and status = any(").push_bind(statuses).push(")");
    }
    if let Some(p) = filter.priority {
        q.push(" and priority = ").push_bind(p.as_str());
    }
    if let Some(tag) = &filter.tag {
        q.push(" and tags @> array[").push_bind(tag.clone()).push("]::text[]");
    }
    if let Some(t) = filter.create_time_start {
        q.push(" and create_time >= ").push_bind(t);
    }
    if let Some(t) = filter.create_time_end {
        q.push(" and create_time < ").push_bind(t);
    }
    // Column and direction come from closed enums, never from input text.
    let column = match filter.order.field {
        OrderField::CreateTime => "create_time",
        OrderField::UpdateTime => "update_time",
    };
    let (cmp, dir) = if filter.order.desc { ("<", "desc") } else { (">", "asc") };
    if let Some(c) = after {
        let ts = OffsetDateTime::from_unix_timestamp_nanos(i128::from(c.micros) * 1000)
            .map_err(|e| sqlx::Error::Encode(e.into()))?;
        q.push(format_args!(" and ({column}, id) {cmp} ("))
            .push_bind(ts)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    q.push(format_args!(" order by {column} {dir}, id {dir} limit "))
        .push_bind(limit);
    let rows: Vec<Row> = q.build_query_as().fetch_all(conn).await?;
    rows.into_iter().map(Ticket::try_from).collect()
}
