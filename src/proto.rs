//! Generated protobuf/gRPC modules and the descriptor set served by reflection.

#![allow(clippy::all, missing_docs)]

/// `deskd.tickets.v1`: the Tickets API.
pub mod tickets {
    pub mod v1 {
        tonic::include_proto!("deskd.tickets.v1");
    }
}

/// `deskd.operations.v1`: long-running operations (AIP-151).
pub mod operations {
    pub mod v1 {
        tonic::include_proto!("deskd.operations.v1");
    }
}

/// `deskd.stats.v1`: the Stats API.
pub mod stats {
    pub mod v1 {
        tonic::include_proto!("deskd.stats.v1");
    }
}

/// `deskd.users.v1`: the Users API.
pub mod users {
    pub mod v1 {
        tonic::include_proto!("deskd.users.v1");
    }
}

/// The encoded `FileDescriptorSet` of every deskd proto (and its imports),
/// registered with gRPC reflection so grpcurl can list and call deskd.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/deskd_descriptor.bin"));
