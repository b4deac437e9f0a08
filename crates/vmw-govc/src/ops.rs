//! Small compositions of requests that several layers need.

use crate::requests::{Find, ObjectType};
use crate::{ErrorKind, Govc, GovcError, GovcExt};

/// Inventory paths of every resource pool (`govc find / -type p`).
pub async fn resource_pools<G: Govc + ?Sized>(govc: &G) -> Result<Vec<String>, GovcError> {
    govc.exec(&Find::new("/").kind(ObjectType::ResourcePool))
        .await
}

/// When `err` says the resource pool is ambiguous, looks up the pools that
/// exist and adds them to the error, so the user can pick one for
/// `resource_pool`. Other errors are returned unchanged, and so is this one
/// if the lookup fails.
pub async fn explain_ambiguous_pool<G: Govc + ?Sized>(govc: &G, err: GovcError) -> GovcError {
    let GovcError::Failed(mut failure) = err else {
        return err;
    };
    if failure.kind == ErrorKind::AmbiguousResourcePool
        && let Ok(pools) = resource_pools(govc).await
    {
        failure.resource_pools = pools;
    }
    GovcError::Failed(failure)
}
