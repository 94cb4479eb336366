//! The data engines the server's move runner drives.

use std::sync::Arc;
use tenantry_mover::engines::{DataEngines, NoData};

pub fn real() -> Arc<dyn DataEngines> {
    Arc::new(NoData)
}
