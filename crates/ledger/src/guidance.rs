//! The explanations the ledger gives when it must refuse on principle.

/// Why a licence or subscription can never move between tenants, and what to do instead.
pub const TRANSFER_REFUSED: &str = "Licences and subscriptions cannot be transferred from one tenant to another. \
Move the organisation instead: buy licences in the target tenant, migrate every mailbox and document library, \
then either cancel the source subscription (the source tenant will no longer be used) or remove its purchased \
licences (the source tenant stays in use). Subscriptions bought through volume licensing are managed in the \
Volume Licensing Service Center. tenantry plans and runs such a move: see POST /v1/moves (`tenantry move plan`).";

/// Why a volume-licensing subscription cannot be changed here.
pub const VOLUME_READ_ONLY: &str = "This subscription was bought through volume licensing and is read-only here: \
quantities, cancellation and renewal are managed in the Volume Licensing Service Center (VLSC) under your \
volume licensing agreement.";
