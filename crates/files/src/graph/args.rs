//! Command-line options for `sharepoint://` and `onedrive://` locations: the app credentials
//! every Graph location shares (`tenantry_graph::args`), and the files engine's own tuning.

use clap::Args;
pub use tenantry_graph::args::{AppCredentialArgs, Side};

use super::SmallUpload;

#[derive(Debug, Args, Default, Clone)]
pub struct GraphArgs {
    #[command(flatten)]
    pub app: AppCredentialArgs,
    /// Graph requests in flight per tenant (all transfers share them).
    #[arg(long, default_value_t = tenantry_graph::config::DEFAULT_MAX_IN_FLIGHT)]
    pub graph_max_in_flight: usize,
    /// How files of at most 4 MiB reach SharePoint/OneDrive: `session` sends their times with
    /// the upload (two requests); `put` sends one PUT and then PATCHes the times (two requests,
    /// and a second version where the library keeps versions).
    #[arg(long, value_enum, default_value_t = SmallUpload::Session)]
    pub graph_small_files: SmallUpload,
}
