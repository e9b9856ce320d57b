//! What the aggregates need of a database, and nothing more: run a statement with
//! typed arguments, read rows of cells. Both backends implement [`Conn`]; every
//! aggregate's SQL is written once, against it.
//!
//! Placeholders are `$n` (PostgreSQL's; the SQLite connection rewrites them to `?n`).
//! Column types are the portable subset: BIGINT, BOOLEAN, TEXT and bytes.

use crate::StoreError;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

/// SQL statements run by this process, BEGIN and COMMIT included (see [`crate::statements`]).
static STATEMENTS: AtomicU64 = AtomicU64::new(0);
/// Transactions begun by this process.
static TRANSACTIONS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn counters() -> (u64, u64) {
    (STATEMENTS.load(Ordering::Relaxed), TRANSACTIONS.load(Ordering::Relaxed))
}

/// Counts statements sent to the database.
pub(crate) fn count_statements(n: u64) {
    STATEMENTS.fetch_add(n, Ordering::Relaxed);
}

/// Counts a transaction as two statements (BEGIN, and its COMMIT or ROLLBACK).
pub(crate) fn count_transaction() {
    STATEMENTS.fetch_add(2, Ordering::Relaxed);
    TRANSACTIONS.fetch_add(1, Ordering::Relaxed);
}

/// One statement argument. A NULL keeps its type: PostgreSQL types every parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Int(Option<i64>),
    Bool(bool),
    Text(Option<&'a str>),
    Bytes(Option<&'a [u8]>),
}

impl<'a> From<&'a i64> for Value<'a> {
    fn from(v: &'a i64) -> Self {
        Value::Int(Some(*v))
    }
}
impl<'a> From<&'a Option<i64>> for Value<'a> {
    fn from(v: &'a Option<i64>) -> Self {
        Value::Int(*v)
    }
}
impl<'a> From<&'a bool> for Value<'a> {
    fn from(v: &'a bool) -> Self {
        Value::Bool(*v)
    }
}
impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(Some(v))
    }
}
impl<'a> From<&'a &str> for Value<'a> {
    fn from(v: &'a &str) -> Self {
        Value::Text(Some(v))
    }
}
impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(Some(v))
    }
}
impl<'a> From<&'a &String> for Value<'a> {
    fn from(v: &'a &String) -> Self {
        Value::Text(Some(v))
    }
}
impl<'a> From<&'a Option<String>> for Value<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Value::Text(v.as_deref())
    }
}
impl<'a> From<&'a Option<&str>> for Value<'a> {
    fn from(v: &'a Option<&str>) -> Self {
        Value::Text(*v)
    }
}
impl<'a> From<&'a Vec<u8>> for Value<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Value::Bytes(Some(v))
    }
}
impl<'a> From<&'a Option<Vec<u8>>> for Value<'a> {
    fn from(v: &'a Option<Vec<u8>>) -> Self {
        Value::Bytes(v.as_deref())
    }
}

/// The conditions of a listing, each with its argument, only for the filters given:
/// a condition that is always true for an absent filter (`$1 IS NULL OR id > $1`)
/// keeps the planner from using an index, so a page deep in a listing would scan every
/// row before it.
#[derive(Default)]
pub(crate) struct Conditions<'a> {
    clauses: Vec<String>,
    pub args: Vec<Value<'a>>,
}

impl<'a> Conditions<'a> {
    /// Adds `clause`, its `?` the placeholder of `value`, when `value` is given.
    pub fn when<T>(&mut self, clause: &str, value: Option<&'a T>) -> &mut Self
    where
        Value<'a>: From<&'a T>,
        T: ?Sized,
    {
        if let Some(v) = value {
            self.args.push(Value::from(v));
            self.clauses.push(clause.replace('?', &format!("${}", self.args.len())));
        }
        self
    }

    /// A clause whose placeholders the caller numbered (its arguments pushed already).
    pub fn raw(&mut self, clause: &str) -> &mut Self {
        self.clauses.push(clause.to_string());
        self
    }

    /// ` WHERE a AND b`, or nothing.
    pub fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// The next placeholder, for what follows the conditions (`LIMIT`).
    pub fn next_placeholder(&self) -> String {
        format!("${}", self.args.len() + 1)
    }
}

/// Refuses text arguments with a NUL character, on both backends alike.
pub(crate) fn refuse_nul(args: &[Value<'_>]) -> Result<(), StoreError> {
    if args.iter().any(|a| matches!(a, Value::Text(Some(t)) if t.contains('\0'))) {
        return Err(StoreError::NulInText);
    }
    Ok(())
}

/// The arguments of a statement, in placeholder order: `args![a, b]` is `&[Value]`.
macro_rules! args {
    ($($e:expr),* $(,)?) => {
        &[$($crate::db::Value::from(&$e)),*]
    };
}
pub(crate) use args;

/// One column of a row read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// A row read, its cells in column order, taken one by one by [`Row::take`].
#[derive(Debug, Default)]
pub(crate) struct Row {
    cells: std::vec::IntoIter<Cell>,
    column: usize,
}

impl Row {
    pub(crate) fn new(cells: Vec<Cell>) -> Self {
        Self { cells: cells.into_iter(), column: 0 }
    }

    /// The next column, as a `T`.
    pub(crate) fn take<T: FromCell>(&mut self) -> Result<T, StoreError> {
        self.column += 1;
        let cell = self.cells.next().unwrap_or(Cell::Null);
        T::from_cell(cell).map_err(|got| StoreError::Corrupt(format!("column {}: unexpected {got}", self.column)))
    }
}

/// A Rust value a cell can be read as; `Err` names what the cell held instead.
pub(crate) trait FromCell: Sized {
    fn from_cell(cell: Cell) -> Result<Self, &'static str>;
}

fn kind(cell: &Cell) -> &'static str {
    match cell {
        Cell::Null => "NULL",
        Cell::Int(_) => "integer",
        Cell::Text(_) => "text",
        Cell::Bytes(_) => "bytes",
    }
}

impl FromCell for i64 {
    fn from_cell(cell: Cell) -> Result<Self, &'static str> {
        match cell {
            Cell::Int(v) => Ok(v),
            other => Err(kind(&other)),
        }
    }
}
impl FromCell for bool {
    fn from_cell(cell: Cell) -> Result<Self, &'static str> {
        match cell {
            Cell::Int(v) => Ok(v != 0),
            other => Err(kind(&other)),
        }
    }
}
impl FromCell for String {
    fn from_cell(cell: Cell) -> Result<Self, &'static str> {
        match cell {
            Cell::Text(v) => Ok(v),
            other => Err(kind(&other)),
        }
    }
}
impl FromCell for Vec<u8> {
    fn from_cell(cell: Cell) -> Result<Self, &'static str> {
        match cell {
            Cell::Bytes(v) => Ok(v),
            other => Err(kind(&other)),
        }
    }
}
impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: Cell) -> Result<Self, &'static str> {
        match cell {
            Cell::Null => Ok(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

/// A record read from one row.
pub(crate) trait FromRow: Sized {
    fn from_row(row: &mut Row) -> Result<Self, StoreError>;
}

macro_rules! tuple_from_row {
    ($($t:ident),+) => {
        impl<$($t: FromCell),+> FromRow for ($($t,)+) {
            fn from_row(row: &mut Row) -> Result<Self, StoreError> {
                Ok(($(row.take::<$t>()?,)+))
            }
        }
    };
}
tuple_from_row!(A);
tuple_from_row!(A, B);
tuple_from_row!(A, B, C);
tuple_from_row!(A, B, C, D);
tuple_from_row!(A, B, C, D, E);

/// A connection, or a transaction on one. Methods are async for PostgreSQL; on SQLite
/// they complete at once, on the thread that owns the connection.
pub(crate) trait Conn: Send {
    /// Runs a statement that returns no rows; returns the rows it changed.
    fn exec(&mut self, sql: &str, args: &[Value<'_>]) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Runs a statement and reads every row it returns.
    fn rows(&mut self, sql: &str, args: &[Value<'_>]) -> impl Future<Output = Result<Vec<Row>, StoreError>> + Send;

    fn fetch_all<T: FromRow + Send>(
        &mut self,
        sql: &str,
        args: &[Value<'_>],
    ) -> impl Future<Output = Result<Vec<T>, StoreError>> + Send {
        async move { self.rows(sql, args).await?.iter_mut().map(T::from_row).collect() }
    }

    fn fetch_optional<T: FromRow + Send>(
        &mut self,
        sql: &str,
        args: &[Value<'_>],
    ) -> impl Future<Output = Result<Option<T>, StoreError>> + Send {
        async move { self.rows(sql, args).await?.first_mut().map(T::from_row).transpose() }
    }

    fn fetch_one<T: FromRow + Send>(
        &mut self,
        sql: &str,
        args: &[Value<'_>],
    ) -> impl Future<Output = Result<T, StoreError>> + Send {
        async move {
            self.fetch_optional(sql, args)
                .await?
                .ok_or_else(|| StoreError::Corrupt("a statement returned no row".into()))
        }
    }

    /// The one column of the first row, if there is one.
    fn scalar<T: FromCell + Send>(
        &mut self,
        sql: &str,
        args: &[Value<'_>],
    ) -> impl Future<Output = Result<Option<T>, StoreError>> + Send {
        async move { Ok(self.fetch_optional::<(T,)>(sql, args).await?.map(|(v,)| v)) }
    }
}

/// JSON in a TEXT column.
pub(crate) fn json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Serialising plain strings, vectors and JSON values cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// The rows of a many-row `VALUES`: `($1, $2), ($3, $4)` for 2 rows of width 2.
pub(crate) fn values_rows(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$1, $2, …` for each column of a comma-separated list.
pub(crate) fn placeholders(columns: &str) -> String {
    (1..=columns.split(',').count()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Every change to clients, users, keys or partners bumps the epoch, which the
/// server's caches watch.
pub(crate) const BUMP_EPOCH: &str = "UPDATE change_epoch SET epoch = epoch + 1 WHERE id = 1";

/// Runs a change and bumps the epoch; returns the rows changed.
pub(crate) async fn change(db: &mut impl Conn, sql: &str, args: &[Value<'_>]) -> Result<u64, StoreError> {
    let n = db.exec(sql, args).await?;
    db.exec(BUMP_EPOCH, &[]).await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_taken_in_order_and_typed() {
        let mut row = Row::new(vec![Cell::Text("a".into()), Cell::Null, Cell::Int(1), Cell::Bytes(vec![7])]);
        assert_eq!(row.take::<String>().unwrap(), "a");
        assert_eq!(row.take::<Option<i64>>().unwrap(), None);
        assert!(row.take::<bool>().unwrap());
        assert_eq!(row.take::<Vec<u8>>().unwrap(), vec![7]);
        let mut row = Row::new(vec![Cell::Int(3)]);
        assert_eq!(
            row.take::<String>().unwrap_err().to_string(),
            "stored data is invalid: column 1: unexpected integer"
        );
    }

    #[test]
    fn values_rows_number_every_argument() {
        assert_eq!(values_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
    }

    #[test]
    fn placeholders_count_columns() {
        assert_eq!(placeholders("a, b,c"), "$1, $2, $3");
    }
}
