//! What a backend provides to the aggregates: somewhere to read and a transaction to
//! write in. [`SqlStore`] implements every aggregate's trait once, for any engine.

use crate::db::Conn;
use crate::{Backend, StoreError};
use std::future::Future;
use std::pin::Pin;

/// The future of a job: it borrows the connection it runs on.
pub(crate) type JobFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

pub(crate) trait Engine: Send + Sync + 'static {
    type Conn: Conn;

    const BACKEND: Backend;

    /// Runs `job` on a connection, outside any write transaction.
    fn read<T, F>(&self, job: F) -> impl Future<Output = Result<T, StoreError>> + Send
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Self::Conn) -> JobFuture<'c, T> + Send + 'static;

    /// Runs `job` in a write transaction: its changes commit together if it returns
    /// `Ok`, and none of them does if it returns `Err`. The answer comes after the commit.
    fn write<T, F>(&self, job: F) -> impl Future<Output = Result<T, StoreError>> + Send
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Self::Conn) -> JobFuture<'c, T> + Send + 'static;

    /// Applies the migrations not yet applied; safe when processes start together.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A store on one engine: the aggregates' traits are implemented for it in their files.
pub struct SqlStore<E> {
    pub(crate) engine: E,
}

#[allow(private_bounds)]
impl<E: Engine> SqlStore<E> {
    pub(crate) async fn read<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut E::Conn) -> JobFuture<'c, T> + Send + 'static,
    {
        self.engine.read(job).await
    }

    pub(crate) async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut E::Conn) -> JobFuture<'c, T> + Send + 'static,
    {
        self.engine.write(job).await
    }
}
