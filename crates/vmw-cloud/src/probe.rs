//! The way to vCenter, checked step by step for diagnostics such as
//! `vmw config check`: which govc, its version, and whether it logs in.

use vmw_govc::parse::AboutInfo;
use vmw_govc::requests::About;
use vmw_govc::{Govc, GovcError, GovcExt};

/// What vCenter says about itself once govc has logged in (`govc about`):
/// proof that the server, the user and the password work.
pub async fn about<G: Govc>(govc: &G) -> Result<AboutInfo, GovcError> {
    govc.exec(&About).await
}
