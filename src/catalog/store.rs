//! [`ObjectStore`]: what `cached.rs` needs from one storage site: a listing, a cheap health
//! probe, an object's body as a stream of pieces, and small state objects. `s3.rs` implements it
//! for S3; unit tests use an in-memory store that can fail on demand.

use std::sync::Arc;

use bytes::Bytes;

use super::{CatalogError, TrackRef};

/// One storage site holding the library.
pub trait ObjectStore: Send + Sync + 'static {
    /// The body of an opened object.
    type Body: ObjectBody;
    /// Every track-looking object, sorted by key.
    fn list(&self) -> impl Future<Output = Result<Vec<TrackRef>, CatalogError>> + Send;
    /// The cheapest request that tells whether the service answers (one listed key).
    fn probe(&self) -> impl Future<Output = Result<(), CatalogError>> + Send;
    /// Starts reading a track. With `exact_version`, only the listed version (anything else is
    /// [`CatalogError::NotFound`]); without, whatever version this site holds.
    fn open(
        &self,
        track: &TrackRef,
        exact_version: bool,
    ) -> impl Future<Output = Result<Object<Self::Body>, CatalogError>> + Send;
    /// A small object beside the library (`name` is relative to the library's prefix), `None`
    /// when there is none.
    fn get(&self, name: &str) -> impl Future<Output = Result<Option<Bytes>, CatalogError>> + Send;
    /// Writes a small object beside the library, replacing it whole.
    fn put(&self, name: &str, data: Bytes)
    -> impl Future<Output = Result<(), CatalogError>> + Send;
    /// Where this site is, for logs.
    fn describe(&self) -> String;
}

/// An object whose body is on its way.
pub struct Object<B> {
    /// Body length, when the site said it.
    pub len: Option<u64>,
    /// The version this site holds (its ETag), when it said.
    pub version: Option<Arc<str>>,
    pub body: B,
}

/// The pieces of an object's body, in order.
pub trait ObjectBody: Send {
    /// The next piece; `None` at the end. A body that sends nothing for the site's stall
    /// timeout fails with kind [`super::StorageErrorKind::Stall`].
    fn next(&mut self) -> impl Future<Output = Result<Option<Bytes>, CatalogError>> + Send;
}
