//! Which tenant port each side of a move uses: the local ledger, or Microsoft Graph through a
//! connection profile of kind `graph`.

use crate::gather::Mover;
use crate::graph_profile::GraphProfile;
use crate::tenant::{LocalTenant, TenantPort};
use crate::tenant_graph::GraphTenant;
use crate::write_limit::WriteLimit;
use std::sync::Arc;
use std::time::Duration;
use tenantry_graph::GraphClient;
use tenantry_ledger::{LedgerError, TenantId};
use tenantry_moves::model::MoveSpec;
use tenantry_store::moves::ProfileKind;
use tenantry_store::StoreError;
use uuid::Uuid;

/// The profile's Graph client, shared in this process (`tenantry_graph::shared_client`: its
/// token reused from step to step, a new client once the profile's credential is replaced).
fn client_for(profile: &GraphProfile) -> Result<GraphClient, String> {
    tenantry_graph::shared_client(profile.config()?, "tenant", || {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))
    })
}

/// The local id of a tenant reached through Graph: its directory (tenant) id, a GUID.
pub fn graph_tenant_id(profile: &GraphProfile) -> Result<TenantId, LedgerError> {
    Uuid::parse_str(&profile.tenant_id)
        .map(TenantId)
        .map_err(|_| {
            LedgerError::invalid(
            "InvalidGraphProfile",
            "a move needs the tenant's directory (tenant) ID, a GUID, as the profile's tenantId",
        )
        })
}

impl Mover {
    /// Opens a `graph` profile (`InvalidProfileKind` for a profile of another kind).
    pub async fn graph_profile(&self, name: &str) -> Result<GraphProfile, StoreError> {
        let (_, plain) = self
            .open_profile(name, ProfileKind::Graph, "Microsoft Graph")
            .await?;
        GraphProfile::from_sealed(&plain).map_err(StoreError::Internal)
    }

    /// The port of one side: Graph when the move names a profile for it, else the ledger.
    pub async fn tenant_port(
        &self,
        graph: Option<&String>,
        tenant: TenantId,
    ) -> Result<Arc<dyn TenantPort>, String> {
        let Some(name) = graph else {
            return Ok(Arc::new(LocalTenant {
                store: self.store.clone(),
                tenant,
            }));
        };
        let profile = self
            .graph_profile(name)
            .await
            .map_err(crate::tenant::store_text)?;
        let client = client_for(&profile)?;
        let writes = WriteLimit::shared(&client.config().budget_key());
        Ok(Arc::new(GraphTenant {
            client,
            tenant,
            profile: name.clone(),
            writes,
        }))
    }

    /// (source, target) ports of a move.
    pub async fn ports(
        &self,
        spec: &MoveSpec,
    ) -> Result<(Arc<dyn TenantPort>, Arc<dyn TenantPort>), String> {
        Ok((
            self.tenant_port(spec.source_graph.as_ref(), spec.source_tenant_id)
                .await?,
            self.tenant_port(spec.target_graph.as_ref(), spec.target_tenant_id)
                .await?,
        ))
    }
}
