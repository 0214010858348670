//! The broker's control plane: the per-broker services that live on the controller shard
//! (`runtime::placement::CONTROLLER_SHARD`): the controller and, in a cluster, this node
//! of it. Every shard reaches it by message, through the same handle
//! (`Shard::control_plane`), never through a field of its own that is empty on every shard
//! but one.
//!
//! - `handle`: the requests any shard sends, and the handle that sends them;
//! - `plane`: the control plane itself, serving those requests on its shard;
//! - `single`: a single broker's controller host (it opens logs, persists the metadata
//!   file, publishes); a cluster's is `shard::cluster`.

pub mod handle;
pub mod plane;
pub mod single;

pub use handle::ControlPlaneHandle;
