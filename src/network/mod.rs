//! Networks: what the engine does to a container's network namespace. For now the loopback of
//! a container's own namespace (Docker's `none` network); bridges, addresses, DNS and published
//! ports come here next.
pub mod loopback;
