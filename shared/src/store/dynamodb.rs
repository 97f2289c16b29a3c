//! The DynamoDB store (DESIGN "DynamoDB"): one table, every record one item
//! whose partition key `pk` names its kind by prefix.
//!
//! | record        | `pk`                       | expires (TTL `expires_at`) |
//! |---------------|----------------------------|----------------------------|
//! | client        | `CLIENT#<id>`              | no                         |
//! | user          | `USER#<id>`                | no                         |
//! | username      | `USERNAME#<username>`      | no                         |
//! | interaction   | `INTERACTION#<id>`         | yes                        |
//! | session       | `SESSION#<hash>`           | yes                        |
//! | consent       | `CONSENT#<user>#<client>`  | no                         |
//! | code          | `CODE#<hash>`              | yes                        |
//! | grant         | `GRANT#<id>`               | yes (absolute expiry)      |
//! | refresh token | `REFRESH#<hash>`           | yes (its grant's expiry)   |
//! | device code   | `DEVICE#<hash>`            | yes (`kept_until`)         |
//! | user code     | `USERCODE#<hash>`          | yes (`kept_until`)         |
//!
//! A user code item points at its device code (`device_hash`), so that the
//! device page finds a device code by what the user typed with two
//! GetItems. On a device code item, `expires_at` is the TTL (the record's
//! `kept_until`) and `code_expires_at` the codes' own expiry.
//!
//! Key components are escaped (`%` as `%25`, `#` as `%23`), so that no two
//! (user, client) pairs share a consent key.
//!
//! The username item is a full copy of the user: writing it with
//! `attribute_not_exists` claims the name, and reading it makes `find_user`
//! one GetItem. Users are never updated through the port, so the copies
//! cannot drift.
//!
//! Grant items alone carry `gsi_user` and `gsi_client`, so the two indexes
//! hold grants and nothing else:
//! - `by_user` (hash `gsi_user`, range `gsi_client`, all attributes):
//!   `list_grants`, `revoke_user`, and `revoke_consent` (user and client by
//!   key equality, so a client id that is a prefix of another never matches);
//! - `by_client` (hash `gsi_client`, projecting `revoked_at` and
//!   `expires_at`): `revoke_client`.
//!
//! Index queries are eventually consistent (DynamoDB offers nothing else on a
//! GSI); each revocation they lead to is a conditional write on the table.
//!
//! A refresh-token item carries a snapshot of its grant's immutable fields,
//! so that `find_refresh` is one GetItem (DESIGN "AWS budget": two sequential
//! round trips per refresh). The view's `revoked_at` is therefore always
//! `None`; revocation is enforced where it must be, atomically, by the
//! rotation transaction's condition on the grant item (invariants 2 and 4).
//!
//! Expired items linger until TTL deletes them (late; moto never does), so
//! every read treats `expires_at <= now` as absent (invariant 5). Consumed
//! refresh tokens stay as tombstones until their grant's expiry (invariant 3).
//!
//! There is no Scan anywhere: every read is a GetItem or a Query.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client as DynamoClient;
use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, CancellationReason, Delete,
    GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType, KeysAndAttributes, Projection,
    ProjectionType, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
    TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem, Update,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use crate::domain::client::Lifetimes;
use crate::domain::{
    AuthCode, AuthorizationRequest, Client, ClientKind, Consent, DeviceCode, DeviceDecision, Flow,
    Grant, GrantType, Interaction, RefreshToken, RefreshView, Scopes, Session, User,
};
use crate::ports::{Failures, Redeemed, Rotated, Store, StoreError};

type Item = HashMap<String, AttributeValue>;

/// The table's partition key.
const PK: &str = "pk";

/// BatchGetItem calls for one read when DynamoDB leaves keys unprocessed
/// (it does under throttling), and the wait before each further one.
const BATCH_ATTEMPTS: u32 = 3;
const BATCH_BACKOFF: Duration = Duration::from_millis(25);
/// The TTL attribute (DESIGN "DynamoDB"), epoch seconds.
const EXPIRES_AT: &str = "expires_at";
const GSI_USER: &str = "gsi_user";
const GSI_CLIENT: &str = "gsi_client";
const BY_USER: &str = "by_user";
const BY_CLIENT: &str = "by_client";

/// A grant that is neither revoked nor expired. Also written where the item
/// may be missing, so that an Update never creates a grant.
const GRANT_ACTIVE: &str =
    "attribute_exists(#pk) AND attribute_not_exists(#revoked) AND #expires > :now";

/// Real DynamoDB cancels a transaction that races another on the same item
/// with `TransactionConflict`; a retry then sees the winner's write and gets
/// a settled answer (for a losing rotation: `Reused`). After the last, 503.
const TRANSACT_ATTEMPTS: u32 = 4;
/// Grants revoked at once by a bulk revocation.
const REVOKE_PARALLELISM: usize = 8;
/// Grants whose immutable fields are remembered for rotation; the cache is
/// emptied when full (a container serves a handful of grants at a time).
const SNAPSHOT_CACHE: usize = 4096;
/// How long `create_table` waits for a new table to become ACTIVE.
const CREATE_WAIT: Duration = Duration::from_secs(300);

/// A [`Store`] on one DynamoDB table. Cheap to clone: clones share the SDK
/// client and the snapshot cache.
#[derive(Clone)]
pub struct DynamoStore {
    client: DynamoClient,
    table: String,
    /// Grant id to the grant's immutable fields, as last read by
    /// `find_refresh` (or written by `redeem_code`). `rotate_refresh` must
    /// copy them onto the successor's item, and the port hands it only the
    /// successor token: with this, the rotation that follows a
    /// `find_refresh` is exactly one TransactWriteItems. The fields never
    /// change, so an entry is never stale.
    snapshots: Arc<Mutex<HashMap<String, Arc<GrantSnapshot>>>>,
    /// Grant id to the id `redeem_code` marks the code with, kept while the
    /// outcome is unknown (an error), so that `undo_redemption` then takes
    /// back this call's redemption only, never a concurrent one of the same
    /// code (both name the same grant). Emptied when full, like `snapshots`.
    redemptions: Arc<Mutex<HashMap<String, String>>>,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl DynamoStore {
    /// A store on `table`, which [`create_table`] made.
    pub fn new(client: DynamoClient, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            snapshots: Arc::new(Mutex::new(HashMap::new())),
            redemptions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The table's name, for logs and admin output.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn remember(&self, snapshot: GrantSnapshot) -> Arc<GrantSnapshot> {
        let snapshot = Arc::new(snapshot);
        let mut cache = self
            .snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= SNAPSHOT_CACHE && !cache.contains_key(&snapshot.id) {
            cache.clear();
        }
        cache.insert(snapshot.id.clone(), Arc::clone(&snapshot));
        snapshot
    }

    /// Drops a grant's snapshot: after `undo_redemption` deleted the grant,
    /// a retried redemption creates it again with new times.
    fn forget(&self, grant_id: &str) {
        self.snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(grant_id);
    }

    /// A refresh token's item, with its grant from the snapshot it carries.
    fn refresh_view(&self, item: &Item) -> Result<RefreshView, StoreError> {
        let token = refresh_from(item)?;
        let snapshot = self.remember(GrantSnapshot::from_refresh_item(item)?);
        let grant = snapshot.grant(token.created_at);
        Ok(RefreshView { token, grant })
    }

    fn remembered(&self, grant_id: &str) -> Option<Arc<GrantSnapshot>> {
        self.snapshots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(grant_id)
            .cloned()
    }

    /// One GetItem. `consistent` wherever a read decides a security
    /// question or follows a write of the same flow.
    async fn get(
        &self,
        op: &'static str,
        pk: String,
        consistent: bool,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| sdk_error(op, e))?;
        Ok(out.item)
    }

    /// Consistent reads of several items in one BatchGetItem, each found
    /// item in its key's place. Keys that DynamoDB leaves unprocessed (it
    /// does under throttling) are asked for again, a few times.
    async fn get_batch<const N: usize>(
        &self,
        op: &'static str,
        pks: [String; N],
    ) -> Result<[Option<Item>; N], StoreError> {
        let mut keys = KeysAndAttributes::builder().consistent_read(true);
        for pk in &pks {
            keys = keys.keys(HashMap::from([(PK.to_owned(), s(pk.as_str()))]));
        }
        let mut pending = Some(HashMap::from([(self.table.clone(), built(keys.build())?)]));
        let mut found: [Option<Item>; N] = std::array::from_fn(|_| None);
        for attempt in 0.. {
            let Some(request) = pending.take().filter(|r| !r.is_empty()) else {
                break;
            };
            if attempt == BATCH_ATTEMPTS {
                return Err(StoreError::Unavailable(format!(
                    "dynamodb {op}: keys still unprocessed after {BATCH_ATTEMPTS} attempts"
                )));
            }
            if attempt > 0 {
                tokio::time::sleep(BATCH_BACKOFF * attempt).await;
            }
            let out = self
                .client
                .batch_get_item()
                .set_request_items(Some(request))
                .send()
                .await
                .map_err(|e| sdk_error(op, e))?;
            let items = out.responses.and_then(|mut r| r.remove(&self.table));
            for item in items.into_iter().flatten() {
                let pk = Fields::new(&item, op).s(PK)?;
                if let Some(i) = pks.iter().position(|k| *k == pk) {
                    found[i] = Some(item);
                }
            }
            pending = out.unprocessed_keys;
        }
        Ok(found)
    }

    /// The client's item and an expiring record's (`pk`), in one
    /// BatchGetItem; an expired record is absent.
    async fn client_and<T>(
        &self,
        op: &'static str,
        client_id: &str,
        pk: String,
        now: i64,
        parse: impl FnOnce(&Item) -> Result<T, StoreError>,
    ) -> Result<(Option<Client>, Option<T>), StoreError> {
        let [client, other] = self.get_batch(op, [client_key(client_id), pk]).await?;
        let client = client.map(|item| client_from(&item)).transpose()?;
        let other = match other {
            Some(item) if is_live(&item, op, now)? => Some(parse(&item)?),
            _ => None,
        };
        Ok((client, other))
    }

    /// One consistent GetItem of an expiring record; an expired one is absent.
    async fn get_live(
        &self,
        op: &'static str,
        pk: String,
        now: i64,
    ) -> Result<Option<Item>, StoreError> {
        match self.get(op, pk, true).await? {
            Some(item) if is_live(&item, op, now)? => Ok(Some(item)),
            _ => Ok(None),
        }
    }

    /// One unconditional PutItem (an upsert).
    async fn put(&self, op: &'static str, item: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error(op, e))?;
        Ok(())
    }

    /// One unconditional DeleteItem (deleting nothing is no error).
    async fn delete(&self, op: &'static str, pk: String) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .send()
            .await
            .map_err(|e| sdk_error(op, e))?;
        Ok(())
    }

    /// One TransactWriteItems, sent again while it is cancelled for a race
    /// (`TransactionConflict`). The SDK puts a `ClientRequestToken` on each
    /// call and its own retries reuse it, so a retry of a transaction that
    /// did commit (the response was lost) is answered as a success, never
    /// turned into a condition failure, which would read as reuse.
    async fn transact(
        &self,
        op: &'static str,
        items: Vec<TransactWriteItem>,
    ) -> Result<Transacted, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match sent {
                Ok(_) => return Ok(Transacted::Committed),
                Err(err) => err,
            };
            let reasons = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                    e.cancellation_reasons().to_vec()
                }
                _ => return Err(sdk_error(op, err)),
            };
            // A cancelled transaction wrote nothing, so retrying it is safe;
            // only a settled answer is classified (a conflict on one item can
            // hide the condition failure that decides the outcome).
            if !reasons
                .iter()
                .any(|r| r.code() == Some(TRANSACTION_CONFLICT))
            {
                return Ok(Transacted::Cancelled(reasons));
            }
            if attempt >= TRANSACT_ATTEMPTS {
                return Err(StoreError::Unavailable(format!(
                    "dynamodb {op}: transaction conflict after {attempt} attempts"
                )));
            }
            tracing::debug!(op, attempt, "dynamodb transaction conflict; retrying");
            tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
        }
    }

    /// Puts `item` if no item has its key. For records that must never be
    /// overwritten: a rewritten code or token could be used again.
    fn put_new(&self, item: Item) -> Result<Put, StoreError> {
        built(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
                .build(),
        )
    }

    /// Marks the grant used at `now`, only if it is active: the rotation's
    /// atomic check of invariant 2 ("its grant is active").
    fn touch_grant(&self, grant_id: &str, now: i64) -> Result<Update, StoreError> {
        built(
            Update::builder()
                .table_name(&self.table)
                .key(PK, s(grant_key(grant_id)))
                .update_expression("SET #last_used = :now")
                .condition_expression(GRANT_ACTIVE)
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#revoked", "revoked_at")
                .expression_attribute_names("#expires", EXPIRES_AT)
                .expression_attribute_names("#last_used", "last_used_at")
                .expression_attribute_values(":now", n(now))
                .build(),
        )
    }

    /// Consumes the token `hash` of grant `grant_id` if it is unconsumed,
    /// within its idle lifetime and unexpired. Returns the item when the
    /// condition fails, to tell reuse from an unknown or expired token
    /// without another read.
    fn consume_token(
        &self,
        hash: &str,
        grant_id: &str,
        successor_hash: &str,
        now: i64,
    ) -> Result<Update, StoreError> {
        built(
            Update::builder()
                .table_name(&self.table)
                .key(PK, s(refresh_key(hash)))
                .update_expression("SET #consumed = :now, #successor = :successor")
                .condition_expression(
                    "attribute_exists(#pk) AND attribute_not_exists(#consumed) \
                     AND #idle > :now AND #expires > :now AND #grant = :grant",
                )
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#consumed", "consumed_at")
                .expression_attribute_names("#successor", "successor_hash")
                .expression_attribute_names("#idle", "idle_expires_at")
                .expression_attribute_names("#expires", EXPIRES_AT)
                .expression_attribute_names("#grant", "grant_id")
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":successor", s(successor_hash))
                .expression_attribute_values(":grant", s(grant_id))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build(),
        )
    }

    /// Deletes the token `hash` if it exists, is unconsumed and belongs to
    /// grant `grant_id`: the half of an undo that takes back a token never
    /// delivered (and so never rotated).
    fn delete_unconsumed_token(&self, hash: &str, grant_id: &str) -> Result<Delete, StoreError> {
        built(
            Delete::builder()
                .table_name(&self.table)
                .key(PK, s(refresh_key(hash)))
                .condition_expression(
                    "attribute_exists(#pk) AND attribute_not_exists(#consumed) AND #grant = :grant",
                )
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#consumed", "consumed_at")
                .expression_attribute_names("#grant", "grant_id")
                .expression_attribute_values(":grant", s(grant_id))
                .build(),
        )
    }

    /// One rotation transaction: the grant is active (and now last used),
    /// `from` is consumed in favour of `successor`, and `successor` stored.
    async fn try_rotate(
        &self,
        from: &str,
        successor: &RefreshToken,
        snapshot: &GrantSnapshot,
        now: i64,
    ) -> Result<Attempt, StoreError> {
        let items = vec![
            TransactWriteItem::builder()
                .update(self.touch_grant(&successor.grant_id, now)?)
                .build(),
            TransactWriteItem::builder()
                .update(self.consume_token(from, &successor.grant_id, &successor.hash, now)?)
                .build(),
            TransactWriteItem::builder()
                .put(self.put_new(refresh_item(successor, snapshot))?)
                .build(),
        ];
        match self.transact("rotate_refresh", items).await? {
            Transacted::Committed => Ok(Attempt::Rotated),
            Transacted::Cancelled(reasons) => {
                if failed(&reasons, 0) {
                    Ok(Attempt::GrantInactive)
                } else if failed(&reasons, 1) {
                    Ok(Attempt::TokenRefused(
                        reasons.get(1).and_then(|r| r.item()).cloned(),
                    ))
                } else if failed(&reasons, 2) {
                    Err(StoreError::Conflict(
                        "a refresh token with this hash exists".into(),
                    ))
                } else {
                    Err(cancelled("rotate_refresh", &reasons))
                }
            }
        }
    }

    /// `redeem_code`'s transaction, marking the code with `redemption`.
    async fn try_redeem(
        &self,
        hash: &str,
        grant: &Grant,
        refresh: Option<&RefreshToken>,
        now: i64,
        redemption: &str,
    ) -> Result<Redeemed, StoreError> {
        let consume = built(
            Update::builder()
                .table_name(&self.table)
                .key(PK, s(code_key(hash)))
                .update_expression("SET #consumed = :now, #redemption = :redemption")
                .condition_expression(
                    "attribute_exists(#pk) AND attribute_not_exists(#consumed) AND #expires > :now",
                )
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#consumed", "consumed_at")
                .expression_attribute_names("#redemption", REDEMPTION)
                .expression_attribute_names("#expires", EXPIRES_AT)
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":redemption", s(redemption))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build(),
        )?;
        let consume = TransactWriteItem::builder().update(consume).build();
        let (items, snapshot) = self.with_new_grant(Some(consume), grant, refresh)?;
        let reasons = match self.transact("redeem_code", items).await? {
            Transacted::Committed => {
                self.remember(snapshot);
                return Ok(Redeemed::Issued);
            }
            Transacted::Cancelled(reasons) => reasons,
        };
        if failed(&reasons, 0) {
            let code = match reasons.first().and_then(|r| r.item()) {
                Some(item) => Some(item.clone()),
                None => self.get("redeem_code", code_key(hash), true).await?,
            };
            let Some(code) = code else {
                return Ok(Redeemed::Invalid);
            };
            let fields = Fields::new(&code, "code");
            // An expired code is absent (invariant 5), consumed or not.
            if fields.n(EXPIRES_AT)? <= now || fields.opt_n("consumed_at")?.is_none() {
                return Ok(Redeemed::Invalid);
            }
            if fields.opt_s(REDEMPTION)?.as_deref() == Some(redemption) {
                // This very call committed; its answer was lost and the SDK
                // sent it again.
                self.remember(snapshot);
                return Ok(Redeemed::Issued);
            }
            return Ok(Redeemed::Replayed {
                grant_id: fields.s("grant_id")?,
            });
        }
        Err(grant_conflict(&reasons, 1).unwrap_or_else(|| cancelled("redeem_code", &reasons)))
    }

    /// Revokes the grant stored under `pk` if it is active: 1, else 0.
    /// The actions of a transaction that creates `grant` with its first
    /// refresh token (both new), after `first` when there is one.
    fn with_new_grant(
        &self,
        first: Option<TransactWriteItem>,
        grant: &Grant,
        refresh: Option<&RefreshToken>,
    ) -> Result<(Vec<TransactWriteItem>, GrantSnapshot), StoreError> {
        let snapshot = GrantSnapshot::of(grant);
        let mut items: Vec<TransactWriteItem> = first.into_iter().collect();
        items.push(
            TransactWriteItem::builder()
                .put(self.put_new(grant_item(grant))?)
                .build(),
        );
        if let Some(token) = refresh {
            items.push(
                TransactWriteItem::builder()
                    .put(self.put_new(refresh_item(token, &snapshot))?)
                    .build(),
            );
        }
        Ok((items, snapshot))
    }

    /// The Update that makes the code or device code `pk`, consumed for
    /// `grant_id`, unconsumed again (`remove`: the attributes to drop).
    fn unconsume(&self, pk: String, remove: &str, grant_id: &str) -> Result<Update, StoreError> {
        built(
            self.unconsume_builder(pk, remove, grant_id)
                .condition_expression(CONSUMED_FOR_GRANT)
                .build(),
        )
    }

    /// `unconsume` without its condition.
    fn unconsume_builder(
        &self,
        pk: String,
        remove: &str,
        grant_id: &str,
    ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder()
            .table_name(&self.table)
            .key(PK, s(pk))
            .update_expression(remove)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#consumed", "consumed_at")
            .expression_attribute_names("#grant", "grant_id")
            .expression_attribute_values(":grant", s(grant_id))
    }

    /// One TransactWriteItems: `restore`, Delete the grant (present and
    /// unrevoked), Delete its first refresh token if there is one
    /// (unconsumed, of this grant). A condition failure is `false`.
    async fn undo_grant(
        &self,
        op: &'static str,
        restore: Update,
        grant_id: &str,
        refresh_hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        let delete_grant = built(
            Delete::builder()
                .table_name(&self.table)
                .key(PK, s(grant_key(grant_id)))
                .condition_expression("attribute_exists(#pk) AND attribute_not_exists(#revoked)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#revoked", "revoked_at")
                .build(),
        )?;
        let mut items = vec![
            TransactWriteItem::builder().update(restore).build(),
            TransactWriteItem::builder().delete(delete_grant).build(),
        ];
        if let Some(refresh_hash) = refresh_hash {
            items.push(
                TransactWriteItem::builder()
                    .delete(self.delete_unconsumed_token(refresh_hash, grant_id)?)
                    .build(),
            );
        }
        match self.transact(op, items).await? {
            Transacted::Committed => {
                self.forget(grant_id);
                Ok(true)
            }
            Transacted::Cancelled(reasons) if any_failed(&reasons) => Ok(false),
            Transacted::Cancelled(reasons) => Err(cancelled(op, &reasons)),
        }
    }

    async fn revoke_item(&self, op: &'static str, pk: String, now: i64) -> Result<u64, StoreError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .update_expression("SET #revoked = :now")
            .condition_expression(GRANT_ACTIVE)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#revoked", "revoked_at")
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(1),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(0)
            }
            Err(e) => Err(sdk_error(op, e)),
        }
    }

    /// The active grants of an index partition (every page). `client_id`
    /// narrows the `by_user` index to one client; `keys_only` fetches just
    /// the keys, for revocation.
    async fn active_grants(
        &self,
        op: &'static str,
        index: Index<'_>,
        now: i64,
        keys_only: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let mut names = HashMap::from([
            ("#revoked".to_owned(), "revoked_at".to_owned()),
            ("#expires".to_owned(), EXPIRES_AT.to_owned()),
        ]);
        let mut values = HashMap::from([(":now".to_owned(), n(now))]);
        let (index_name, key_condition) = match index {
            Index::User(user) => {
                names.insert("#user".into(), GSI_USER.into());
                values.insert(":user".into(), s(user));
                (BY_USER, "#user = :user")
            }
            Index::UserClient(user, client) => {
                names.insert("#user".into(), GSI_USER.into());
                names.insert("#client".into(), GSI_CLIENT.into());
                values.insert(":user".into(), s(user));
                values.insert(":client".into(), s(client));
                (BY_USER, "#user = :user AND #client = :client")
            }
            Index::Client(client) => {
                names.insert("#client".into(), GSI_CLIENT.into());
                values.insert(":client".into(), s(client));
                (BY_CLIENT, "#client = :client")
            }
        };
        if keys_only {
            names.insert("#pk".into(), PK.into());
        }
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index_name)
                .key_condition_expression(key_condition)
                .filter_expression("attribute_not_exists(#revoked) AND #expires > :now")
                .set_projection_expression(keys_only.then(|| "#pk".to_owned()))
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error(op, e))?;
            found.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(found),
            }
        }
    }

    /// Revokes every active grant of an index partition: one Query per page,
    /// then one conditional UpdateItem per grant, a few at a time. Each
    /// grant counts once even if another revocation races this one.
    async fn revoke_all(
        &self,
        op: &'static str,
        index: Index<'_>,
        now: i64,
    ) -> Result<u64, StoreError> {
        let keys = self.active_grants(op, index, now, true).await?;
        let pks = keys
            .iter()
            .map(|item| Fields::new(item, "grant").s(PK))
            .collect::<Result<Vec<_>, _>>()?;
        self.revoke_items(op, pks, now).await
    }

    /// One conditional UpdateItem per grant key, a few at a time.
    async fn revoke_items(
        &self,
        op: &'static str,
        pks: Vec<String>,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut tasks = JoinSet::new();
        let mut revoked = 0;
        let mut failure = None;
        let mut collect =
            |joined: Result<Result<u64, StoreError>, tokio::task::JoinError>| match joined {
                Ok(Ok(n)) => revoked += n,
                Ok(Err(e)) => failure = failure.take().or(Some(e)),
                Err(_) => {
                    failure = failure.take().or(Some(StoreError::Unavailable(format!(
                        "dynamodb {op}: a revocation task failed"
                    ))))
                }
            };
        for pk in pks {
            if tasks.len() >= REVOKE_PARALLELISM
                && let Some(joined) = tasks.join_next().await
            {
                collect(joined);
            }
            let store = self.clone();
            tasks.spawn(async move { store.revoke_item(op, pk, now).await });
        }
        while let Some(joined) = tasks.join_next().await {
            collect(joined);
        }
        // Every grant was attempted; a failure is reported (the operation is
        // idempotent, so the caller may simply repeat it).
        match failure {
            Some(e) => Err(e),
            None => Ok(revoked),
        }
    }
}

/// Which grants an index query reads.
#[derive(Clone, Copy)]
enum Index<'a> {
    User(&'a str),
    UserClient(&'a str, &'a str),
    Client(&'a str),
}

enum Transacted {
    Committed,
    Cancelled(Vec<CancellationReason>),
}

/// The outcome of one rotation transaction.
enum Attempt {
    Rotated,
    /// The grant is revoked, expired or missing.
    GrantInactive,
    /// The token is missing, consumed, idle-expired, expired or of another
    /// grant; its item if DynamoDB returned it.
    TokenRefused(Option<Item>),
}

const CONDITION_FAILED: &str = "ConditionalCheckFailed";
/// The condition of taking back a redemption: consumed, for this grant.
const CONSUMED_FOR_GRANT: &str =
    "attribute_exists(#pk) AND attribute_exists(#consumed) AND #grant = :grant";
/// The attribute naming the call that redeemed a code.
const REDEMPTION: &str = "redemption_id";
const TRANSACTION_CONFLICT: &str = "TransactionConflict";

/// Whether the `at`-th action of a cancelled transaction failed its condition.
fn failed(reasons: &[CancellationReason], at: usize) -> bool {
    reasons.get(at).and_then(|r| r.code()) == Some(CONDITION_FAILED)
}

/// The conflict of a cancelled grant creation whose grant Put is action
/// `at` and its refresh token's Put the next, if one of them failed.
fn grant_conflict(reasons: &[CancellationReason], at: usize) -> Option<StoreError> {
    if failed(reasons, at) {
        Some(StoreError::Conflict("a grant with this id exists".into()))
    } else if failed(reasons, at + 1) {
        Some(StoreError::Conflict(
            "a refresh token with this hash exists".into(),
        ))
    } else {
        None
    }
}

/// Whether the string attribute `name` of `item` is `value`.
fn item_names(item: &Item, name: &str, value: &str) -> bool {
    matches!(item.get(name), Some(AttributeValue::S(v)) if v == value)
}

/// Whether the old image returned for the `at`-th action of a cancelled
/// transaction has `name` = `value`.
fn refused_item_names(reasons: &[CancellationReason], at: usize, name: &str, value: &str) -> bool {
    reasons
        .get(at)
        .and_then(|r| r.item())
        .is_some_and(|item| item_names(item, name, value))
}

/// Whether any action of a cancelled transaction failed its condition.
fn any_failed(reasons: &[CancellationReason]) -> bool {
    reasons.iter().any(|r| r.code() == Some(CONDITION_FAILED))
}

fn cancelled(op: &str, reasons: &[CancellationReason]) -> StoreError {
    let codes: Vec<&str> = reasons.iter().map(|r| r.code().unwrap_or("?")).collect();
    StoreError::Unavailable(format!(
        "dynamodb {op}: transaction cancelled [{}]",
        codes.join(", ")
    ))
}

#[async_trait]
impl Store for DynamoStore {
    /// PutItem.
    async fn put_client(&self, client: &Client) -> Result<(), StoreError> {
        self.put("put_client", client_item(client)?).await
    }

    /// GetItem, eventually consistent: read on every request, changed by
    /// admins; a second of staleness after a change is harmless.
    async fn get_client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        self.get("get_client", client_key(id), false)
            .await?
            .map(|item| client_from(&item))
            .transpose()
    }

    /// TransactWriteItems: the user and its username claim, both new.
    async fn add_user(&self, user: &User) -> Result<(), StoreError> {
        let items = vec![
            TransactWriteItem::builder()
                .put(self.put_new(user_item(user_key(&user.id), user))?)
                .build(),
            TransactWriteItem::builder()
                .put(self.put_new(user_item(username_key(&user.username), user))?)
                .build(),
        ];
        match self.transact("add_user", items).await? {
            Transacted::Committed => Ok(()),
            Transacted::Cancelled(reasons) if failed(&reasons, 1) => Err(StoreError::Conflict(
                "a user with this username exists".into(),
            )),
            Transacted::Cancelled(reasons) if failed(&reasons, 0) => {
                Err(StoreError::Conflict("a user with this id exists".into()))
            }
            Transacted::Cancelled(reasons) => Err(cancelled("add_user", &reasons)),
        }
    }

    /// GetItem, eventually consistent (users are written once, by admins).
    async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        self.get("get_user", user_key(id), false)
            .await?
            .map(|item| user_from(&item))
            .transpose()
    }

    /// GetItem of the username item, which holds the whole user.
    async fn find_user(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.get("find_user", username_key(username), false)
            .await?
            .map(|item| user_from(&item))
            .transpose()
    }

    /// GetItem of the user (consistent), then one TransactWriteItems that
    /// sets or removes the secret on both of the user's items.
    async fn set_totp(&self, user_id: &str, secret: Option<&str>) -> Result<bool, StoreError> {
        let Some(item) = self.get("set_totp", user_key(user_id), true).await? else {
            return Ok(false);
        };
        let user = user_from(&item)?;
        let update = |pk: String| {
            let b = Update::builder()
                .table_name(&self.table)
                .key(PK, s(pk))
                .condition_expression("attribute_exists(#pk) AND #id = :id")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#id", "id")
                .expression_attribute_names("#secret", "totp_secret")
                .expression_attribute_names("#step", "totp_step")
                .expression_attribute_values(":id", s(user_id));
            match secret {
                Some(v) => b
                    .update_expression("SET #secret = :secret REMOVE #step")
                    .expression_attribute_values(":secret", s(v)),
                None => b.update_expression("REMOVE #secret, #step"),
            }
            .build()
            .map_err(|e| StoreError::Unavailable(format!("dynamodb set_totp: {e}")))
        };
        let items = vec![
            TransactWriteItem::builder()
                .update(update(user_key(user_id))?)
                .build(),
            TransactWriteItem::builder()
                .update(update(username_key(&user.username))?)
                .build(),
        ];
        match self.transact("set_totp", items).await? {
            Transacted::Committed => Ok(true),
            Transacted::Cancelled(reasons) if any_failed(&reasons) => Ok(false),
            Transacted::Cancelled(reasons) => Err(cancelled("set_totp", &reasons)),
        }
    }

    /// UpdateItem of the user's id item, conditional on the step.
    async fn claim_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(user_key(user_id)))
            .update_expression("SET #step = :step")
            .condition_expression(
                "attribute_exists(#pk) AND (attribute_not_exists(#step) OR #step < :step)",
            )
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#step", "totp_step")
            .expression_attribute_values(":step", n(step))
            .send()
            .await;
        match updated {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_error("claim_totp_step", e)),
        }
    }

    /// PutItem (an upsert: the same interaction is written again at sign-in).
    async fn put_interaction(&self, interaction: &Interaction) -> Result<(), StoreError> {
        self.put("put_interaction", interaction_item(interaction)?)
            .await
    }

    /// GetItem, consistent: it follows the write of the previous page.
    async fn get_interaction(&self, id: &str, now: i64) -> Result<Option<Interaction>, StoreError> {
        self.get_live("get_interaction", interaction_key(id), now)
            .await?
            .map(|item| interaction_from(&item))
            .transpose()
    }

    /// DeleteItem (deleting nothing is no error).
    async fn delete_interaction(&self, id: &str) -> Result<(), StoreError> {
        self.delete("delete_interaction", interaction_key(id)).await
    }

    /// PutItem.
    async fn put_session(&self, session: &Session) -> Result<(), StoreError> {
        self.put("put_session", session_item(session)).await
    }

    /// GetItem, consistent.
    async fn get_session(&self, hash: &str, now: i64) -> Result<Option<Session>, StoreError> {
        self.get_live("get_session", session_key(hash), now)
            .await?
            .map(|item| session_from(&item))
            .transpose()
    }

    /// GetItem, consistent.
    async fn get_consent(
        &self,
        user_id: &str,
        client_id: &str,
    ) -> Result<Option<Consent>, StoreError> {
        self.get("get_consent", consent_key(user_id, client_id), true)
            .await?
            .map(|item| consent_from(&item))
            .transpose()
    }

    /// PutItem.
    async fn put_consent(&self, consent: &Consent) -> Result<(), StoreError> {
        self.put("put_consent", consent_item(consent)).await
    }

    /// PutItem if absent: an insert, never an upsert, because rewriting a
    /// consumed code as unconsumed would let it be redeemed twice
    /// (invariant 6).
    async fn put_code(&self, code: &AuthCode) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(code_item(code)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::Conflict("a code with this hash exists".into()))
            }
            Err(e) => Err(sdk_error("put_code", e)),
        }
    }

    /// GetItem, consistent.
    async fn find_code(&self, hash: &str, now: i64) -> Result<Option<AuthCode>, StoreError> {
        self.get_live("find_code", code_key(hash), now)
            .await?
            .map(|item| code_from(&item))
            .transpose()
    }

    /// One BatchGetItem of the client's item and the code's.
    async fn client_and_code(
        &self,
        client_id: &str,
        hash: &str,
        now: i64,
    ) -> Result<(Option<Client>, Option<AuthCode>), StoreError> {
        self.client_and("client_and_code", client_id, code_key(hash), now, code_from)
            .await
    }

    /// One TransactWriteItems: consume the code (if unused and unexpired),
    /// put the grant, put the first refresh token. When the code's
    /// condition fails its old image comes back with the cancellation, so
    /// a replay is told from an invalid code without another read; a
    /// consistent GetItem follows only when DynamoDB returned no image
    /// (no such code).
    ///
    /// The code is marked with an id of this call, so that the SDK's retry
    /// of a commit whose answer was lost is told from a replay. Until the
    /// outcome is known (on an error the service takes the redemption
    /// back), the id is remembered for `undo_redemption`.
    async fn redeem_code(
        &self,
        hash: &str,
        grant: &Grant,
        refresh: Option<&RefreshToken>,
        now: i64,
    ) -> Result<Redeemed, StoreError> {
        let redemption = crate::domain::secret::new_id()
            .map_err(|_| StoreError::Unavailable("no randomness for a redemption id".into()))?;
        {
            let mut pending = self
                .redemptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if pending.len() >= SNAPSHOT_CACHE {
                pending.clear();
            }
            pending.insert(grant.id.clone(), redemption.clone());
        }
        let outcome = self
            .try_redeem(hash, grant, refresh, now, &redemption)
            .await;
        if outcome.is_ok() {
            // Known: committed (no other redemption of the code can then
            // exist to be taken back in its place) or nothing written.
            self.redemptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&grant.id);
        }
        outcome
    }

    /// One TransactWriteItems: the grant and its first refresh token, both new.
    async fn create_grant(
        &self,
        grant: &Grant,
        refresh: Option<&RefreshToken>,
    ) -> Result<(), StoreError> {
        let (items, snapshot) = self.with_new_grant(None, grant, refresh)?;
        match self.transact("create_grant", items).await? {
            Transacted::Committed => {
                self.remember(snapshot);
                Ok(())
            }
            // The first token's hash is of a secret made for this call:
            // the grant and that token both present means this call
            // committed and the SDK sent it again after a lost answer.
            // (Without a token, an existing grant id stays a Conflict.)
            Transacted::Cancelled(reasons)
                if refresh.is_some() && failed(&reasons, 0) && failed(&reasons, 1) =>
            {
                self.remember(snapshot);
                Ok(())
            }
            Transacted::Cancelled(reasons) => {
                Err(grant_conflict(&reasons, 0)
                    .unwrap_or_else(|| cancelled("create_grant", &reasons)))
            }
        }
    }

    /// Query `by_user` for the client, then one conditional UpdateItem per
    /// grant beyond the newest `keep`.
    async fn revoke_oldest_grants(
        &self,
        user_id: &str,
        client_id: &str,
        keep: usize,
        now: i64,
    ) -> Result<u64, StoreError> {
        let op = "revoke_oldest_grants";
        let mut grants = self
            .active_grants(op, Index::UserClient(user_id, client_id), now, false)
            .await?
            .iter()
            .map(grant_from)
            .collect::<Result<Vec<_>, _>>()?;
        if grants.len() <= keep {
            return Ok(0);
        }
        grants.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        let oldest = grants.split_off(keep);
        self.revoke_items(op, oldest.iter().map(|g| grant_key(&g.id)).collect(), now)
            .await
    }

    /// GetItem, consistent; an expired counter is none.
    async fn get_failures(&self, key: &str, now: i64) -> Result<Failures, StoreError> {
        match self.get_live("get_failures", failure_key(key), now).await? {
            Some(item) => failures_from(&item),
            None => Ok(Failures::default()),
        }
    }

    /// UpdateItem that counts on from a live counter; if the counter had
    /// expired (TTL deletes late), a PutItem that starts it again.
    async fn add_failure(&self, key: &str, now: i64, ttl: i64) -> Result<Failures, StoreError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(failure_key(key)))
            .update_expression("ADD #count :one SET #last = :now, #expires = :expires")
            .condition_expression("attribute_not_exists(#pk) OR #expires > :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#count", "count")
            .expression_attribute_names("#last", "last_at")
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":expires", n(now + ttl))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match updated {
            Ok(out) => failures_from(&out.attributes.unwrap_or_default()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                let item = ItemBuilder::new(failure_key(key))
                    .n("count", 1)
                    .n("last_at", now)
                    .n(EXPIRES_AT, now + ttl)
                    .build();
                self.put("add_failure", item).await?;
                Ok(Failures {
                    count: 1,
                    last_at: now,
                })
            }
            Err(e) => Err(sdk_error("add_failure", e)),
        }
    }

    /// DeleteItem (deleting nothing is no error).
    async fn clear_failures(&self, key: &str) -> Result<(), StoreError> {
        self.delete("clear_failures", failure_key(key)).await
    }

    /// GetItem, consistent: the token item alone, its grant from the
    /// snapshot on it (see the module docs: `revoked_at` is always `None`,
    /// `last_used_at` is the token's `created_at`).
    async fn find_refresh(&self, hash: &str, now: i64) -> Result<Option<RefreshView>, StoreError> {
        let item = self
            .get_live("find_refresh", refresh_key(hash), now)
            .await?;
        item.map(|item| self.refresh_view(&item)).transpose()
    }

    /// One BatchGetItem of the client's item and the token's.
    async fn client_and_refresh(
        &self,
        client_id: &str,
        hash: &str,
        now: i64,
    ) -> Result<(Option<Client>, Option<RefreshView>), StoreError> {
        self.client_and(
            "client_and_refresh",
            client_id,
            refresh_key(hash),
            now,
            |item| self.refresh_view(item),
        )
        .await
    }

    /// One TransactWriteItems on the happy path after `find_refresh`: Update
    /// the grant (active; last used now), Update the old token (unconsumed,
    /// within its idle lifetime; consumed now, successor named), Put the
    /// successor. Beyond that:
    /// - a GetItem of the old token first, if this store has not seen the
    ///   grant (its snapshot is needed for the successor's item);
    /// - when the token's condition failed and DynamoDB returned no image,
    ///   a GetItem of it (it does not exist, or expired);
    /// - within the reuse leeway, a second transaction of the same shape
    ///   from the old token's successor.
    async fn rotate_refresh(
        &self,
        old_hash: &str,
        successor: &RefreshToken,
        leeway: i64,
        now: i64,
    ) -> Result<Rotated, StoreError> {
        let snapshot = match self.remembered(&successor.grant_id) {
            Some(snapshot) => snapshot,
            None => {
                let Some(item) = self
                    .get_live("rotate_refresh", refresh_key(old_hash), now)
                    .await?
                else {
                    return Ok(Rotated::Invalid);
                };
                let snapshot = GrantSnapshot::from_refresh_item(&item)?;
                if snapshot.id != successor.grant_id {
                    return Ok(Rotated::Invalid);
                }
                self.remember(snapshot)
            }
        };

        let refused = match self.try_rotate(old_hash, successor, &snapshot, now).await? {
            Attempt::Rotated => return Ok(Rotated::Rotated),
            Attempt::GrantInactive => return Ok(Rotated::Invalid),
            Attempt::TokenRefused(item) => item,
        };
        let old = match refused {
            Some(item) => Some(item),
            None => {
                self.get("rotate_refresh", refresh_key(old_hash), true)
                    .await?
            }
        };
        let Some(old) = old else {
            return Ok(Rotated::Invalid);
        };
        if !is_live(&old, "rotate_refresh", now)? {
            return Ok(Rotated::Invalid);
        }
        let old = refresh_from(&old)?;
        if old.grant_id != successor.grant_id {
            return Ok(Rotated::Invalid);
        }
        if old.successor_hash.as_deref() == Some(successor.hash.as_str()) {
            // This very call committed; its answer was lost and the SDK
            // sent it again.
            return Ok(Rotated::Rotated);
        }
        let Some(consumed_at) = old.consumed_at else {
            // Unconsumed yet refused: past its idle lifetime.
            return Ok(Rotated::Invalid);
        };
        let reused = Rotated::Reused {
            grant_id: old.grant_id.clone(),
        };
        // A client that lost the response to its last refresh may retry with
        // the same token for `leeway` seconds; it then continues from the
        // token that was issued to it and never received. Only one step
        // back: anything older is reuse (invariant 3).
        let within = leeway > 0 && now - consumed_at <= leeway;
        let Some(next) = old.successor_hash.filter(|_| within) else {
            return Ok(reused);
        };
        match self.try_rotate(&next, successor, &snapshot, now).await? {
            Attempt::Rotated => Ok(Rotated::Rotated),
            Attempt::GrantInactive => Ok(Rotated::Invalid),
            Attempt::TokenRefused(Some(item))
                if item_names(&item, "successor_hash", &successor.hash) =>
            {
                Ok(Rotated::Rotated)
            }
            Attempt::TokenRefused(_) => Ok(reused),
        }
    }

    /// One TransactWriteItems: Update the code (consumed, for this grant;
    /// `consumed_at` removed), Delete the grant (present and unrevoked; its
    /// index entries go with the item), Delete the first refresh token if
    /// there is one (unconsumed, of this grant). A condition failure is
    /// `false`: nothing was written.
    ///
    /// The grant must be unrevoked: one revoked since the redemption (a
    /// replay of the code, an admin) is never taken back, or the code would
    /// become redeemable again and the revocation forgotten.
    async fn undo_redemption(
        &self,
        code_hash: &str,
        grant_id: &str,
        refresh_hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut restore = self.unconsume_builder(
            code_key(code_hash),
            "REMOVE #consumed, #redemption",
            grant_id,
        );
        restore = restore.expression_attribute_names("#redemption", REDEMPTION);
        let mine = self
            .redemptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(grant_id);
        restore = match mine {
            // Only the redemption this store made (the code names the same
            // grant whoever redeemed it).
            Some(id) => restore
                .condition_expression(format!(
                    "{CONSUMED_FOR_GRANT} AND #redemption = :redemption"
                ))
                .expression_attribute_values(":redemption", s(id)),
            None => restore.condition_expression(CONSUMED_FOR_GRANT),
        };
        let restore = built(restore.build())?;
        self.undo_grant("undo_redemption", restore, grant_id, refresh_hash)
            .await
    }

    /// A consistent GetItem of the presented token, a second of its
    /// successor when the leeway path must be followed, then one
    /// TransactWriteItems: Update the replaced token (still naming
    /// `successor_hash`; `consumed_at` and `successor_hash` removed), Delete
    /// the successor (unconsumed, of the same grant). A condition failure is
    /// `false`: nothing was written. This is a failure path, outside the
    /// round-trip budget.
    async fn undo_rotation(
        &self,
        presented_hash: &str,
        successor_hash: &str,
    ) -> Result<bool, StoreError> {
        let Some(presented) = self
            .get("undo_rotation", refresh_key(presented_hash), true)
            .await?
        else {
            return Ok(false);
        };
        let presented = refresh_from(&presented)?;
        // The token that `successor_hash` replaced: the presented one, or
        // (after a rotation within the leeway) the presented one's successor.
        let predecessor = match presented.successor_hash.as_deref() {
            None => return Ok(false),
            Some(next) if next == successor_hash => presented,
            Some(next) => {
                let Some(item) = self.get("undo_rotation", refresh_key(next), true).await? else {
                    return Ok(false);
                };
                let next = refresh_from(&item)?;
                if next.successor_hash.as_deref() != Some(successor_hash) {
                    return Ok(false);
                }
                next
            }
        };
        let restore = built(
            Update::builder()
                .table_name(&self.table)
                .key(PK, s(refresh_key(&predecessor.hash)))
                .update_expression("REMOVE #consumed, #successor")
                .condition_expression("attribute_exists(#pk) AND #successor = :successor")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#consumed", "consumed_at")
                .expression_attribute_names("#successor", "successor_hash")
                .expression_attribute_values(":successor", s(successor_hash))
                .build(),
        )?;
        let items = vec![
            TransactWriteItem::builder().update(restore).build(),
            TransactWriteItem::builder()
                .delete(self.delete_unconsumed_token(successor_hash, &predecessor.grant_id)?)
                .build(),
        ];
        match self.transact("undo_rotation", items).await? {
            Transacted::Committed => Ok(true),
            Transacted::Cancelled(reasons) if any_failed(&reasons) => Ok(false),
            Transacted::Cancelled(reasons) => Err(cancelled("undo_rotation", &reasons)),
        }
    }

    /// GetItem, consistent. No clock: reports the grant as it is, until TTL
    /// deletes it some time after its expiry.
    async fn get_grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        self.get("get_grant", grant_key(id), true)
            .await?
            .map(|item| grant_from(&item))
            .transpose()
    }

    /// Query `by_user` (every page), newest first.
    async fn list_grants(&self, user_id: &str, now: i64) -> Result<Vec<Grant>, StoreError> {
        let mut grants = self
            .active_grants("list_grants", Index::User(user_id), now, false)
            .await?
            .iter()
            .map(grant_from)
            .collect::<Result<Vec<_>, _>>()?;
        grants.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        Ok(grants)
    }

    /// One conditional UpdateItem: the grant's tokens die with it, because
    /// every rotation re-checks the grant (invariant 4).
    async fn revoke_grant(&self, id: &str, now: i64) -> Result<u64, StoreError> {
        self.revoke_item("revoke_grant", grant_key(id), now).await
    }

    /// Query `by_user`, then one conditional UpdateItem per active grant.
    async fn revoke_user(&self, user_id: &str, now: i64) -> Result<u64, StoreError> {
        self.revoke_all("revoke_user", Index::User(user_id), now)
            .await
    }

    /// Query `by_client`, then one conditional UpdateItem per active grant.
    async fn revoke_client(&self, client_id: &str, now: i64) -> Result<u64, StoreError> {
        self.revoke_all("revoke_client", Index::Client(client_id), now)
            .await
    }

    /// DeleteItem of the consent, then Query `by_user` for that client and
    /// one conditional UpdateItem per active grant. Not one transaction (a
    /// user may hold any number of grants): the consent goes first, so that
    /// no new authorization relies on it while the grants are revoked.
    async fn revoke_consent(
        &self,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> Result<u64, StoreError> {
        self.delete("revoke_consent", consent_key(user_id, client_id))
            .await?;
        self.revoke_all("revoke_consent", Index::UserClient(user_id, client_id), now)
            .await
    }

    // Device authorization (RFC 8628).

    /// One TransactWriteItems: Put the device code item (new) and the user
    /// code item (new, or replacing one no longer kept).
    async fn put_device_code(&self, device: &DeviceCode) -> Result<(), StoreError> {
        let user_code = ItemBuilder::new(user_code_key(&device.user_code_hash))
            .s("device_hash", &device.hash)
            .n(EXPIRES_AT, device.kept_until)
            .build();
        let put_user_code = built(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(user_code))
                .condition_expression("attribute_not_exists(#pk) OR #expires <= :now")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#expires", EXPIRES_AT)
                .expression_attribute_values(":now", n(device.created_at))
                .build(),
        )?;
        let items = vec![
            TransactWriteItem::builder()
                .put(self.put_new(device_item(device)?)?)
                .build(),
            TransactWriteItem::builder().put(put_user_code).build(),
        ];
        match self.transact("put_device_code", items).await? {
            Transacted::Committed => Ok(()),
            Transacted::Cancelled(reasons) if any_failed(&reasons) => Err(StoreError::Conflict(
                "a device code with this device or user code exists".into(),
            )),
            Transacted::Cancelled(reasons) => Err(cancelled("put_device_code", &reasons)),
        }
    }

    /// GetItem, consistent.
    async fn find_device_code(
        &self,
        hash: &str,
        now: i64,
    ) -> Result<Option<DeviceCode>, StoreError> {
        self.get_live("find_device_code", device_key(hash), now)
            .await?
            .map(|item| device_from(&item))
            .transpose()
    }

    /// GetItem of the user code item, then GetItem of its device code (both
    /// consistent; the browser side, outside the token budget).
    async fn find_user_code(
        &self,
        user_code_hash: &str,
        now: i64,
    ) -> Result<Option<DeviceCode>, StoreError> {
        let Some(item) = self
            .get_live("find_user_code", user_code_key(user_code_hash), now)
            .await?
        else {
            return Ok(None);
        };
        let device_hash = Fields::new(&item, "user code").s("device_hash")?;
        let found = self.find_device_code(&device_hash, now).await?;
        // A pointer left by an older record of the same user code is no match.
        Ok(found.filter(|d| d.user_code_hash == user_code_hash))
    }

    /// UpdateItem, conditional on the code being undecided and unexpired.
    async fn decide_device_code(
        &self,
        hash: &str,
        decision: &DeviceDecision,
        now: i64,
    ) -> Result<bool, StoreError> {
        let updated = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(device_key(hash)))
            .update_expression("SET #decision = :decision")
            .condition_expression(
                "attribute_exists(#pk) AND attribute_not_exists(#decision) \
                 AND attribute_not_exists(#consumed) AND #code_expires > :now",
            )
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#decision", "decision")
            .expression_attribute_names("#consumed", "consumed_at")
            .expression_attribute_names("#code_expires", "code_expires_at")
            .expression_attribute_values(":decision", s(to_json(decision, "device code")?))
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        conditional("decide_device_code", updated)
    }

    /// UpdateItem, conditional on the last poll being the one read.
    async fn record_device_poll(
        &self,
        hash: &str,
        last_polled_at: Option<i64>,
        interval: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(device_key(hash)))
            .update_expression("SET #last = :now, #interval = :interval")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#last", "last_polled_at")
            .expression_attribute_names("#interval", "interval")
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":interval", n(interval));
        let update = match last_polled_at {
            None => update.condition_expression(
                "attribute_exists(#pk) AND #expires > :now AND attribute_not_exists(#last)",
            ),
            Some(last) => update
                .condition_expression("attribute_exists(#pk) AND #expires > :now AND #last = :last")
                .expression_attribute_values(":last", n(last)),
        };
        conditional("record_device_poll", update.send().await)
    }

    /// One TransactWriteItems: Update the device code (approved for the
    /// grant's user, unconsumed, unexpired; consumed now, for this grant),
    /// Put the grant, Put its first refresh token if any.
    async fn redeem_device_code(
        &self,
        hash: &str,
        grant: &Grant,
        refresh: Option<&RefreshToken>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let approved = to_json(
            &DeviceDecision::Approved {
                user_id: grant.user_id.clone(),
                auth_time: grant.auth_time,
                amr: grant.amr.clone(),
            },
            "device code",
        )?;
        let consume = built(
            Update::builder()
                .table_name(&self.table)
                .key(PK, s(device_key(hash)))
                .update_expression("SET #consumed = :now, #grant = :grant")
                .condition_expression(
                    "attribute_exists(#pk) AND attribute_not_exists(#consumed) \
                     AND #decision = :approved AND #code_expires > :now",
                )
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#consumed", "consumed_at")
                .expression_attribute_names("#grant", "grant_id")
                .expression_attribute_names("#decision", "decision")
                .expression_attribute_names("#code_expires", "code_expires_at")
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":grant", s(&grant.id))
                .expression_attribute_values(":approved", s(approved))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build(),
        )?;
        let consume = TransactWriteItem::builder().update(consume).build();
        let (items, snapshot) = self.with_new_grant(Some(consume), grant, refresh)?;
        match self.transact("redeem_device_code", items).await? {
            Transacted::Committed => {
                self.remember(snapshot);
                Ok(true)
            }
            // The grant id is new for this call: consumed for it means this
            // call committed and the SDK sent it again after a lost answer.
            Transacted::Cancelled(reasons)
                if failed(&reasons, 0)
                    && refused_item_names(&reasons, 0, "grant_id", &grant.id) =>
            {
                self.remember(snapshot);
                Ok(true)
            }
            Transacted::Cancelled(reasons) if failed(&reasons, 0) => Ok(false),
            Transacted::Cancelled(reasons) => Err(grant_conflict(&reasons, 1)
                .unwrap_or_else(|| cancelled("redeem_device_code", &reasons))),
        }
    }

    /// One TransactWriteItems, as `undo_redemption`: Update the device code
    /// (consumed for this grant; `consumed_at` and `grant_id` removed),
    /// Delete the grant (unrevoked), Delete the first refresh token
    /// (unconsumed, of this grant) if there is one.
    async fn undo_device_redemption(
        &self,
        hash: &str,
        grant_id: &str,
        refresh_hash: Option<&str>,
    ) -> Result<bool, StoreError> {
        let restore = self.unconsume(device_key(hash), "REMOVE #consumed, #grant", grant_id)?;
        self.undo_grant("undo_device_redemption", restore, grant_id, refresh_hash)
            .await
    }
}

/// The outcome of a conditional UpdateItem: whether its condition held.
fn conditional<O, R>(
    op: &str,
    outcome: Result<O, SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError, R>>,
) -> Result<bool, StoreError>
where
    R: std::fmt::Debug,
{
    match outcome {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(sdk_error(op, e)),
    }
}

// ---------------------------------------------------------------- the table

/// Creates `table` with the indexes this store uses and TTL on
/// `expires_at`. Idempotent: if the table exists, returns `Ok(false)` after
/// checking its indexes and enabling TTL if that step was missed.
pub async fn create_table(client: &DynamoClient, table: &str) -> Result<bool, StoreError> {
    let key = |name: &str, kind: KeyType| {
        built(
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build(),
        )
    };
    let string_attribute = |name: &str| {
        built(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build(),
        )
    };
    let by_user = built(
        GlobalSecondaryIndex::builder()
            .index_name(BY_USER)
            .key_schema(key(GSI_USER, KeyType::Hash)?)
            .key_schema(key(GSI_CLIENT, KeyType::Range)?)
            // list_grants returns whole grants.
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build(),
    )?;
    let by_client = built(
        GlobalSecondaryIndex::builder()
            .index_name(BY_CLIENT)
            .key_schema(key(GSI_CLIENT, KeyType::Hash)?)
            // Enough to filter active grants and revoke them by key.
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::Include)
                    .non_key_attributes("revoked_at")
                    .non_key_attributes(EXPIRES_AT)
                    .build(),
            )
            .build(),
    )?;
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute(PK)?)
        .attribute_definitions(string_attribute(GSI_USER)?)
        .attribute_definitions(string_attribute(GSI_CLIENT)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .global_secondary_indexes(by_user)
        .global_secondary_indexes(by_client)
        .send()
        .await;
    let created = match created {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            false
        }
        Err(e) => return Err(sdk_error("create_table", e)),
    };
    wait_until_active(client, table).await?;
    enable_ttl(client, table).await?;
    Ok(created)
}

/// Polls DescribeTable until the table and its indexes are ACTIVE (real
/// DynamoDB takes seconds to minutes; moto is instant), and checks that an
/// existing table has the indexes this store queries.
async fn wait_until_active(client: &DynamoClient, table: &str) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    loop {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| sdk_error("create_table", e))?;
        let Some(desc) = described.table else {
            return Err(StoreError::Unavailable(format!(
                "dynamodb create_table: {table} has no description"
            )));
        };
        let indexes = desc.global_secondary_indexes();
        for wanted in [BY_USER, BY_CLIENT] {
            if !indexes.iter().any(|i| i.index_name() == Some(wanted)) {
                return Err(StoreError::Unavailable(format!(
                    "dynamodb create_table: table {table} exists without the index {wanted}"
                )));
            }
        }
        let active = desc.table_status() == Some(&TableStatus::Active)
            && indexes.iter().all(|i| {
                i.index_status().is_none() || i.index_status() == Some(&IndexStatus::Active)
            });
        if active {
            return Ok(());
        }
        if started.elapsed() > CREATE_WAIT {
            return Err(StoreError::Unavailable(format!(
                "dynamodb create_table: {table} is not ACTIVE after {} s",
                CREATE_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Turns TTL on for `expires_at` unless it is on already (DynamoDB refuses
/// to enable it twice).
async fn enable_ttl(client: &DynamoClient, table: &str) -> Result<(), StoreError> {
    let described = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| sdk_error("create_table", e))?;
    if let Some(ttl) = described.time_to_live_description {
        let on = matches!(
            ttl.time_to_live_status(),
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        );
        match ttl.attribute_name() {
            Some(EXPIRES_AT) if on => return Ok(()),
            Some(other) if on => {
                return Err(StoreError::Unavailable(format!(
                    "dynamodb create_table: table {table} has TTL on `{other}`, not `{EXPIRES_AT}`"
                )));
            }
            _ => {}
        }
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(built(
            TimeToLiveSpecification::builder()
                .attribute_name(EXPIRES_AT)
                .enabled(true)
                .build(),
        )?)
        .send()
        .await
        .map_err(|e| sdk_error("create_table", e))?;
    Ok(())
}

// ---------------------------------------------------------------- keys

/// `KIND#part#part`, each part escaped so that it cannot contain the
/// separator.
fn key(kind: &str, parts: &[&str]) -> String {
    let mut key = kind.to_owned();
    for part in parts {
        key.push('#');
        for c in part.chars() {
            match c {
                '%' => key.push_str("%25"),
                '#' => key.push_str("%23"),
                c => key.push(c),
            }
        }
    }
    key
}

fn client_key(id: &str) -> String {
    key("CLIENT", &[id])
}
fn user_key(id: &str) -> String {
    key("USER", &[id])
}
fn username_key(username: &str) -> String {
    key("USERNAME", &[username])
}
fn failure_key(name: &str) -> String {
    key("FAILURES", &[name])
}
fn interaction_key(id: &str) -> String {
    key("INTERACTION", &[id])
}
fn session_key(hash: &str) -> String {
    key("SESSION", &[hash])
}
fn consent_key(user_id: &str, client_id: &str) -> String {
    key("CONSENT", &[user_id, client_id])
}
fn code_key(hash: &str) -> String {
    key("CODE", &[hash])
}
fn grant_key(id: &str) -> String {
    key("GRANT", &[id])
}
fn refresh_key(hash: &str) -> String {
    key("REFRESH", &[hash])
}
fn device_key(hash: &str) -> String {
    key("DEVICE", &[hash])
}
fn user_code_key(hash: &str) -> String {
    key("USERCODE", &[hash])
}

// ---------------------------------------------------------------- records to items

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Builds an item attribute by attribute; `None` leaves the attribute out,
/// which conditions test with `attribute_not_exists`.
struct ItemBuilder(Item);

impl ItemBuilder {
    fn new(pk: String) -> Self {
        Self(HashMap::from([(PK.to_owned(), s(pk))]))
    }
    fn s(mut self, name: &str, v: &str) -> Self {
        self.0.insert(name.to_owned(), s(v));
        self
    }
    fn opt_s(self, name: &str, v: Option<&str>) -> Self {
        match v {
            Some(v) => self.s(name, v),
            None => self,
        }
    }
    fn n(mut self, name: &str, v: i64) -> Self {
        self.0.insert(name.to_owned(), n(v));
        self
    }
    fn opt_n(self, name: &str, v: Option<i64>) -> Self {
        match v {
            Some(v) => self.n(name, v),
            None => self,
        }
    }
    fn list(mut self, name: &str, v: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.0.insert(
            name.to_owned(),
            AttributeValue::L(v.into_iter().map(s).collect()),
        );
        self
    }
    fn build(self) -> Item {
        self.0
    }
}

fn client_item(c: &Client) -> Result<Item, StoreError> {
    Ok(ItemBuilder::new(client_key(&c.id))
        .s("id", &c.id)
        .s("name", &c.name)
        .s(
            "kind",
            match c.kind {
                ClientKind::Confidential => "confidential",
                ClientKind::Public => "public",
            },
        )
        .opt_s("secret_hash", c.secret_hash.as_deref())
        .list("redirect_uris", c.redirect_uris.iter().map(String::as_str))
        .list("grant_types", c.grant_types.iter().map(|g| g.as_str()))
        .s("scopes", &c.scopes.to_string())
        .s("lifetimes", &to_json(&c.lifetimes, "client")?)
        .n("require_mfa", i64::from(c.require_mfa))
        .n("created_at", c.created_at)
        .build())
}

fn client_from(item: &Item) -> Result<Client, StoreError> {
    let f = Fields::new(item, "client");
    let kind = match f.s("kind")?.as_str() {
        "confidential" => ClientKind::Confidential,
        "public" => ClientKind::Public,
        _ => return Err(f.corrupt("kind")),
    };
    let grant_types = f
        .list("grant_types")?
        .iter()
        .map(|g| GrantType::parse(g).ok_or_else(|| f.corrupt("grant_types")))
        .collect::<Result<_, _>>()?;
    Ok(Client {
        id: f.s("id")?,
        name: f.s("name")?,
        kind,
        secret_hash: f.opt_s("secret_hash")?,
        redirect_uris: f.list("redirect_uris")?,
        grant_types,
        scopes: f.scopes("scopes")?,
        lifetimes: f.json::<Lifetimes>("lifetimes")?,
        require_mfa: f.opt_n("require_mfa")? == Some(1),
        created_at: f.n("created_at")?,
    })
}

fn user_item(pk: String, u: &User) -> Item {
    ItemBuilder::new(pk)
        .s("id", &u.id)
        .s("username", &u.username)
        .s("password_hash", &u.password_hash)
        .opt_s("email", u.email.as_deref())
        .opt_s("totp_secret", u.totp_secret.as_deref())
        .n("created_at", u.created_at)
        .build()
}

fn user_from(item: &Item) -> Result<User, StoreError> {
    let f = Fields::new(item, "user");
    Ok(User {
        id: f.s("id")?,
        username: f.s("username")?,
        password_hash: f.s("password_hash")?,
        email: f.opt_s("email")?,
        totp_secret: f.opt_s("totp_secret")?,
        created_at: f.n("created_at")?,
    })
}

fn interaction_item(i: &Interaction) -> Result<Item, StoreError> {
    Ok(ItemBuilder::new(interaction_key(&i.id))
        .s("id", &i.id)
        .s("csrf_hash", &i.csrf_hash)
        .s("browser_hash", &i.browser_hash)
        .s("request", &to_json(&i.request, "interaction")?)
        .opt_s("user_id", i.user_id.as_deref())
        .opt_n("auth_time", i.auth_time)
        .list("amr", &i.amr)
        .n(EXPIRES_AT, i.expires_at)
        .s("flow", &to_json(&i.flow, "interaction")?)
        .build())
}

fn interaction_from(item: &Item) -> Result<Interaction, StoreError> {
    let f = Fields::new(item, "interaction");
    Ok(Interaction {
        id: f.s("id")?,
        csrf_hash: f.s("csrf_hash")?,
        browser_hash: f.s("browser_hash")?,
        request: f.json::<AuthorizationRequest>("request")?,
        user_id: f.opt_s("user_id")?,
        auth_time: f.opt_n("auth_time")?,
        amr: f.list("amr")?,
        expires_at: f.n(EXPIRES_AT)?,
        flow: match f.opt_s("flow")? {
            Some(_) => f.json::<Flow>("flow")?,
            None => Flow::default(),
        },
    })
}

fn session_item(v: &Session) -> Item {
    ItemBuilder::new(session_key(&v.hash))
        .s("hash", &v.hash)
        .s("user_id", &v.user_id)
        .n("auth_time", v.auth_time)
        .list("amr", &v.amr)
        .n(EXPIRES_AT, v.expires_at)
        .build()
}

fn session_from(item: &Item) -> Result<Session, StoreError> {
    let f = Fields::new(item, "session");
    Ok(Session {
        hash: f.s("hash")?,
        user_id: f.s("user_id")?,
        auth_time: f.n("auth_time")?,
        amr: f.list("amr")?,
        expires_at: f.n(EXPIRES_AT)?,
    })
}

fn consent_item(c: &Consent) -> Item {
    ItemBuilder::new(consent_key(&c.user_id, &c.client_id))
        .s("user_id", &c.user_id)
        .s("client_id", &c.client_id)
        .s("scopes", &c.scopes.to_string())
        .n("granted_at", c.granted_at)
        .build()
}

fn consent_from(item: &Item) -> Result<Consent, StoreError> {
    let f = Fields::new(item, "consent");
    Ok(Consent {
        user_id: f.s("user_id")?,
        client_id: f.s("client_id")?,
        scopes: f.scopes("scopes")?,
        granted_at: f.n("granted_at")?,
    })
}

fn code_item(c: &AuthCode) -> Item {
    ItemBuilder::new(code_key(&c.hash))
        .s("hash", &c.hash)
        .s("client_id", &c.client_id)
        .s("redirect_uri", &c.redirect_uri)
        .s("user_id", &c.user_id)
        .s("scopes", &c.scopes.to_string())
        .opt_s("nonce", c.nonce.as_deref())
        .opt_s("code_challenge", c.code_challenge.as_deref())
        .n("auth_time", c.auth_time)
        .list("amr", &c.amr)
        .s("grant_id", &c.grant_id)
        .n(EXPIRES_AT, c.expires_at)
        .opt_n("consumed_at", c.consumed_at)
        .build()
}

fn code_from(item: &Item) -> Result<AuthCode, StoreError> {
    let f = Fields::new(item, "code");
    Ok(AuthCode {
        hash: f.s("hash")?,
        client_id: f.s("client_id")?,
        redirect_uri: f.s("redirect_uri")?,
        user_id: f.s("user_id")?,
        scopes: f.scopes("scopes")?,
        nonce: f.opt_s("nonce")?,
        code_challenge: f.opt_s("code_challenge")?,
        auth_time: f.n("auth_time")?,
        amr: f.list("amr")?,
        grant_id: f.s("grant_id")?,
        expires_at: f.n(EXPIRES_AT)?,
        consumed_at: f.opt_n("consumed_at")?,
    })
}

fn grant_item(g: &Grant) -> Item {
    let mut item = ItemBuilder::new(grant_key(&g.id))
        .s("id", &g.id)
        .s("user_id", &g.user_id)
        .s("client_id", &g.client_id)
        .s("scopes", &g.scopes.to_string())
        .n("auth_time", g.auth_time)
        .list("amr", &g.amr)
        .n("created_at", g.created_at)
        .n(EXPIRES_AT, g.expires_at)
        .opt_n("revoked_at", g.revoked_at)
        .n("last_used_at", g.last_used_at);
    // Index keys may not be empty strings; a grant without one is simply
    // not in that index.
    if !g.user_id.is_empty() {
        item = item.s(GSI_USER, &g.user_id);
    }
    if !g.client_id.is_empty() {
        item = item.s(GSI_CLIENT, &g.client_id);
    }
    item.build()
}

fn failures_from(item: &Item) -> Result<Failures, StoreError> {
    let f = Fields::new(item, "failures");
    Ok(Failures {
        count: u32::try_from(f.n("count")?).map_err(|_| f.corrupt("count"))?,
        last_at: f.n("last_at")?,
    })
}

fn grant_from(item: &Item) -> Result<Grant, StoreError> {
    let f = Fields::new(item, "grant");
    Ok(Grant {
        id: f.s("id")?,
        user_id: f.s("user_id")?,
        client_id: f.s("client_id")?,
        scopes: f.scopes("scopes")?,
        auth_time: f.n("auth_time")?,
        amr: f.list("amr")?,
        created_at: f.n("created_at")?,
        expires_at: f.n(EXPIRES_AT)?,
        revoked_at: f.opt_n("revoked_at")?,
        last_used_at: f.n("last_used_at")?,
    })
}

/// The fields of a grant that never change after it is created, copied
/// onto each of its refresh tokens' items.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GrantSnapshot {
    id: String,
    user_id: String,
    client_id: String,
    scopes: Scopes,
    auth_time: i64,
    amr: Vec<String>,
    created_at: i64,
    expires_at: i64,
}

impl GrantSnapshot {
    fn of(g: &Grant) -> Self {
        Self {
            id: g.id.clone(),
            user_id: g.user_id.clone(),
            client_id: g.client_id.clone(),
            scopes: g.scopes.clone(),
            auth_time: g.auth_time,
            amr: g.amr.clone(),
            created_at: g.created_at,
            expires_at: g.expires_at,
        }
    }

    fn from_refresh_item(item: &Item) -> Result<Self, StoreError> {
        let f = Fields::new(item, "refresh token");
        Ok(Self {
            id: f.s("grant_id")?,
            user_id: f.s("grant_user_id")?,
            client_id: f.s("grant_client_id")?,
            scopes: f.scopes("grant_scopes")?,
            auth_time: f.n("grant_auth_time")?,
            amr: f.list("grant_amr")?,
            created_at: f.n("grant_created_at")?,
            expires_at: f.n("grant_expires_at")?,
        })
    }

    /// The grant as a token read sees it: not revoked as far as it knows,
    /// last used when this token was issued.
    fn grant(&self, last_used_at: i64) -> Grant {
        Grant {
            id: self.id.clone(),
            user_id: self.user_id.clone(),
            client_id: self.client_id.clone(),
            scopes: self.scopes.clone(),
            auth_time: self.auth_time,
            amr: self.amr.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: None,
            last_used_at,
        }
    }
}

/// A refresh token's item: the token, with `expires_at` its grant's
/// absolute expiry (so that the consumed tombstone lives as long as reuse
/// can be detected) and `idle_expires_at` a plain attribute, plus the
/// grant's snapshot (`grant_*`).
fn refresh_item(t: &RefreshToken, g: &GrantSnapshot) -> Item {
    ItemBuilder::new(refresh_key(&t.hash))
        .s("hash", &t.hash)
        .s("grant_id", &t.grant_id)
        .s("client_id", &t.client_id)
        .s("user_id", &t.user_id)
        .n("created_at", t.created_at)
        .n("idle_expires_at", t.idle_expires_at)
        .n(EXPIRES_AT, t.expires_at)
        .opt_n("consumed_at", t.consumed_at)
        .opt_s("successor_hash", t.successor_hash.as_deref())
        .s("grant_user_id", &g.user_id)
        .s("grant_client_id", &g.client_id)
        .s("grant_scopes", &g.scopes.to_string())
        .n("grant_auth_time", g.auth_time)
        .list("grant_amr", &g.amr)
        .n("grant_created_at", g.created_at)
        .n("grant_expires_at", g.expires_at)
        .build()
}

fn refresh_from(item: &Item) -> Result<RefreshToken, StoreError> {
    let f = Fields::new(item, "refresh token");
    Ok(RefreshToken {
        hash: f.s("hash")?,
        grant_id: f.s("grant_id")?,
        client_id: f.s("client_id")?,
        user_id: f.s("user_id")?,
        created_at: f.n("created_at")?,
        idle_expires_at: f.n("idle_expires_at")?,
        expires_at: f.n(EXPIRES_AT)?,
        consumed_at: f.opt_n("consumed_at")?,
        successor_hash: f.opt_s("successor_hash")?,
    })
}

fn device_item(d: &DeviceCode) -> Result<Item, StoreError> {
    let decision = d
        .decision
        .as_ref()
        .map(|v| to_json(v, "device code"))
        .transpose()?;
    Ok(ItemBuilder::new(device_key(&d.hash))
        .s("hash", &d.hash)
        .s("user_code_hash", &d.user_code_hash)
        .s("client_id", &d.client_id)
        .s("scopes", &d.scopes.to_string())
        .n("created_at", d.created_at)
        .n("code_expires_at", d.expires_at)
        .n(EXPIRES_AT, d.kept_until)
        .n("interval", d.interval)
        .opt_n("last_polled_at", d.last_polled_at)
        .opt_s("decision", decision.as_deref())
        .opt_n("consumed_at", d.consumed_at)
        .build())
}

fn device_from(item: &Item) -> Result<DeviceCode, StoreError> {
    let f = Fields::new(item, "device code");
    Ok(DeviceCode {
        hash: f.s("hash")?,
        user_code_hash: f.s("user_code_hash")?,
        client_id: f.s("client_id")?,
        scopes: f.scopes("scopes")?,
        created_at: f.n("created_at")?,
        expires_at: f.n("code_expires_at")?,
        kept_until: f.n(EXPIRES_AT)?,
        interval: f.n("interval")?,
        last_polled_at: f.opt_n("last_polled_at")?,
        decision: match f.opt_s("decision")? {
            Some(_) => Some(f.json::<DeviceDecision>("decision")?),
            None => None,
        },
        consumed_at: f.opt_n("consumed_at")?,
    })
}

// ---------------------------------------------------------------- items to records

/// Typed reads of an item's attributes. Errors name the record kind and the
/// attribute, never a value.
struct Fields<'a> {
    item: &'a Item,
    what: &'static str,
}

impl<'a> Fields<'a> {
    fn new(item: &'a Item, what: &'static str) -> Self {
        Self { item, what }
    }

    fn corrupt(&self, name: &str) -> StoreError {
        StoreError::Unavailable(format!(
            "dynamodb: a {} item has a missing or malformed `{name}`",
            self.what
        ))
    }

    fn s(&self, name: &str) -> Result<String, StoreError> {
        self.opt_s(name)?.ok_or_else(|| self.corrupt(name))
    }

    fn opt_s(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(true)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
            Some(_) => Err(self.corrupt(name)),
        }
    }

    fn n(&self, name: &str) -> Result<i64, StoreError> {
        self.opt_n(name)?.ok_or_else(|| self.corrupt(name))
    }

    fn opt_n(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(true)) => Ok(None),
            Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|_| self.corrupt(name)),
            Some(_) => Err(self.corrupt(name)),
        }
    }

    fn list(&self, name: &str) -> Result<Vec<String>, StoreError> {
        match self.item.get(name) {
            Some(AttributeValue::L(values)) => values
                .iter()
                .map(|v| match v {
                    AttributeValue::S(v) => Ok(v.clone()),
                    _ => Err(self.corrupt(name)),
                })
                .collect(),
            _ => Err(self.corrupt(name)),
        }
    }

    fn scopes(&self, name: &str) -> Result<Scopes, StoreError> {
        Scopes::parse(&self.s(name)?).map_err(|_| self.corrupt(name))
    }

    fn json<T: DeserializeOwned>(&self, name: &str) -> Result<T, StoreError> {
        // serde_json's message can quote the value, so it is dropped.
        serde_json::from_str(&self.s(name)?).map_err(|_| self.corrupt(name))
    }
}

/// Whether an item is unexpired at `now` (invariant 5). Items without
/// `expires_at` never expire.
fn is_live(item: &Item, what: &'static str, now: i64) -> Result<bool, StoreError> {
    Ok(Fields::new(item, what)
        .opt_n(EXPIRES_AT)?
        .is_none_or(|expires_at| expires_at > now))
}

fn to_json<T: Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|_| {
        StoreError::Unavailable(format!("dynamodb: a {what} could not be encoded as JSON"))
    })
}

// ---------------------------------------------------------------- errors

/// Every SDK failure is a 503 (invariant 7). The SDK's messages name
/// operations, tables and error codes; condition failures carry the item
/// only in a field that `Display` does not print.
fn sdk_error<E, R>(op: &str, e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(format!("dynamodb {op}: {}", DisplayErrorContext(&e)))
}

/// A request this module built lacked a required field: a bug here, not an
/// input problem, but still no panic.
fn built<T>(result: Result<T, BuildError>) -> Result<T, StoreError> {
    result.map_err(|e| StoreError::Unavailable(format!("dynamodb: request not built: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_escape_their_separator() {
        assert_eq!(consent_key("u1", "app"), "CONSENT#u1#app");
        assert_ne!(consent_key("a#b", "c"), consent_key("a", "b#c"));
        assert_ne!(consent_key("a%23", "b"), consent_key("a#", "b"));
        assert_eq!(grant_key("50%#"), "GRANT#50%25%23");
    }

    fn grant() -> Grant {
        Grant {
            id: "g1".into(),
            user_id: "u1".into(),
            client_id: "app".into(),
            scopes: Scopes::parse("openid offline_access").unwrap(),
            auth_time: 10,
            amr: vec!["pwd".into(), "otp".into()],
            created_at: 11,
            expires_at: 1_000,
            revoked_at: None,
            last_used_at: 11,
        }
    }

    #[test]
    fn refresh_items_carry_the_grant_snapshot() {
        let g = grant();
        let mut t = RefreshToken::issue("h".into(), &g, 100, 11);
        t.consumed_at = Some(12);
        t.successor_hash = Some("h2".into());
        let item = refresh_item(&t, &GrantSnapshot::of(&g));
        assert_eq!(refresh_from(&item).unwrap(), t);
        let snapshot = GrantSnapshot::from_refresh_item(&item).unwrap();
        assert_eq!(snapshot.grant(11), g);
        // Only grants are indexed.
        assert!(!item.contains_key(GSI_USER) && !item.contains_key(GSI_CLIENT));
    }

    #[test]
    fn grants_round_trip_and_are_indexed() {
        let mut g = grant();
        let item = grant_item(&g);
        assert_eq!(grant_from(&item).unwrap(), g);
        assert_eq!(item.get(GSI_USER), Some(&s("u1")));
        assert_eq!(item.get(GSI_CLIENT), Some(&s("app")));
        assert!(
            !item.contains_key("revoked_at"),
            "absent, for the conditions"
        );
        g.revoked_at = Some(20);
        assert_eq!(grant_from(&grant_item(&g)).unwrap(), g);
    }

    #[test]
    fn expiry_is_exclusive() {
        let item = session_item(&Session {
            hash: "h".into(),
            user_id: "u1".into(),
            auth_time: 1,
            amr: vec![],
            expires_at: 100,
        });
        assert!(is_live(&item, "session", 99).unwrap());
        assert!(!is_live(&item, "session", 100).unwrap());
        assert!(
            is_live(
                &consent_item(&Consent {
                    user_id: "u".into(),
                    client_id: "c".into(),
                    scopes: Scopes::parse("openid").unwrap(),
                    granted_at: 1,
                }),
                "consent",
                i64::MAX
            )
            .unwrap()
        );
    }

    #[test]
    fn malformed_items_are_unavailable_without_their_values() {
        let mut item = session_item(&Session {
            hash: "h".into(),
            user_id: "u1".into(),
            auth_time: 1,
            amr: vec![],
            expires_at: 100,
        });
        item.insert("auth_time".into(), s("s3cr3t"));
        match session_from(&item) {
            Err(StoreError::Unavailable(msg)) => {
                assert!(
                    msg.contains("auth_time") && !msg.contains("s3cr3t"),
                    "{msg}"
                )
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    /// The AWS round-trip budget (DESIGN "AWS budget"), counted on moto's
    /// server: the DynamoDB calls each operation makes.
    mod budget {
        use std::sync::{Arc, Mutex};

        use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
        use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
        use aws_sdk_dynamodb::error::BoxError;

        use super::super::*;
        use crate::domain::secret::hash;

        use crate::store::fixtures::{T, code, grant};

        /// Records the operation of every request sent (retries included).
        #[derive(Debug, Clone, Default)]
        struct Calls(Arc<Mutex<Vec<String>>>);

        impl Calls {
            fn take(&self) -> Vec<String> {
                std::mem::take(&mut *self.0.lock().unwrap())
            }
        }

        impl Intercept for Calls {
            fn name(&self) -> &'static str {
                "Calls"
            }

            fn read_before_transmit(
                &self,
                context: &BeforeTransmitInterceptorContextRef<'_>,
                _: &RuntimeComponents,
                _: &mut ConfigBag,
            ) -> Result<(), BoxError> {
                let target = context
                    .request()
                    .headers()
                    .get("x-amz-target")
                    .unwrap_or("?");
                let op = target.rsplit('.').next().unwrap_or(target);
                self.0.lock().unwrap().push(op.to_owned());
                Ok(())
            }
        }

        async fn client(calls: &Calls) -> DynamoClient {
            assert!(
                std::env::var_os("AWS_ENDPOINT_URL").is_some(),
                "the DynamoDB tests need moto running and AWS_ENDPOINT_URL pointing at it \
                 (scripts/test.sh starts it); AWS_ENDPOINT_URL is unset"
            );
            let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            let config = aws_sdk_dynamodb::config::Builder::from(&sdk)
                .interceptor(calls.clone())
                .build();
            DynamoClient::from_conf(config)
        }

        async fn table(client: &DynamoClient, name: &str) -> String {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let table = format!("tokenfn-budget-{name}-{}-{nanos}", std::process::id());
            assert!(create_table(client, &table).await.unwrap());
            table
        }

        fn token(secret: &str, g: &Grant, now: i64) -> RefreshToken {
            RefreshToken::issue(hash(secret), g, 3_600, now)
        }

        #[tokio::test]
        async fn code_and_refresh_grants_stay_within_two_round_trips() {
            let calls = Calls::default();
            let client = client(&calls).await;
            let table = table(&client, "flows").await;
            let store = DynamoStore::new(client.clone(), table.clone());
            let g = grant("g1");
            let c = code("code", "g1");
            store.put_code(&c).await.unwrap();
            calls.take();

            // authorization_code grant: read the code, then one transaction.
            assert!(store.find_code(&c.hash, T).await.unwrap().is_some());
            assert_eq!(calls.take(), ["GetItem"]);
            let r0 = token("r0", &g, T);
            assert_eq!(
                store.redeem_code(&c.hash, &g, Some(&r0), T).await.unwrap(),
                Redeemed::Issued
            );
            assert_eq!(calls.take(), ["TransactWriteItems"]);
            // A replay is told from the cancellation's old image.
            assert_eq!(
                store
                    .redeem_code(&c.hash, &grant("g2"), None, T + 1)
                    .await
                    .unwrap(),
                Redeemed::Replayed {
                    grant_id: "g1".into()
                }
            );
            assert_eq!(calls.take(), ["TransactWriteItems"]);

            // refresh_token grant, in a container that has not seen the grant.
            let store = DynamoStore::new(client.clone(), table.clone());
            assert!(
                store
                    .find_refresh(&r0.hash, T + 10)
                    .await
                    .unwrap()
                    .is_some()
            );
            assert_eq!(calls.take(), ["GetItem"]);
            let r1 = token("r1", &g, T + 10);
            assert_eq!(
                store
                    .rotate_refresh(&r0.hash, &r1, 0, T + 10)
                    .await
                    .unwrap(),
                Rotated::Rotated
            );
            assert_eq!(calls.take(), ["TransactWriteItems"]);

            // Reuse is told from the cancellation's old image too.
            let view = store.find_refresh(&r0.hash, T + 20).await.unwrap().unwrap();
            assert!(view.token.consumed_at.is_some());
            calls.take();
            assert_eq!(
                store
                    .rotate_refresh(&r0.hash, &token("x", &g, T + 20), 0, T + 20)
                    .await
                    .unwrap(),
                Rotated::Reused {
                    grant_id: "g1".into()
                }
            );
            assert_eq!(calls.take(), ["TransactWriteItems"]);

            // Within the leeway: a second transaction, from the successor.
            assert_eq!(
                store
                    .rotate_refresh(&r0.hash, &token("r2", &g, T + 12), 5, T + 12)
                    .await
                    .unwrap(),
                Rotated::Rotated
            );
            assert_eq!(calls.take(), ["TransactWriteItems", "TransactWriteItems"]);

            // Without a prior find_refresh the grant's snapshot is read first.
            let cold = DynamoStore::new(client.clone(), table.clone());
            assert_eq!(
                cold.rotate_refresh(&hash("r2"), &token("r3", &g, T + 13), 0, T + 13)
                    .await
                    .unwrap(),
                Rotated::Rotated
            );
            assert_eq!(calls.take(), ["GetItem", "TransactWriteItems"]);

            // Revocation is one write; the next rotation sees it atomically.
            assert_eq!(store.revoke_grant("g1", T + 14).await.unwrap(), 1);
            assert_eq!(calls.take(), ["UpdateItem"]);
            assert_eq!(
                store
                    .rotate_refresh(&hash("r3"), &token("r4", &g, T + 15), 0, T + 15)
                    .await
                    .unwrap(),
                Rotated::Invalid
            );
            assert_eq!(calls.take(), ["TransactWriteItems"]);
        }

        /// The device_code grant: a poll reads the device code (one GetItem,
        /// beside the client's), then writes once: the poll, or the
        /// redemption that creates the grant (one transaction, beside the
        /// signatures).
        #[tokio::test]
        async fn device_polls_stay_within_two_round_trips() {
            let calls = Calls::default();
            let client = client(&calls).await;
            let table = table(&client, "device").await;
            let store = DynamoStore::new(client.clone(), table.clone());
            calls.take();
            let device = DeviceCode {
                hash: hash("device"),
                user_code_hash: hash("BCDFGHJK"),
                client_id: "app".into(),
                scopes: Scopes::parse("openid offline_access").unwrap(),
                created_at: T,
                expires_at: T + 600,
                kept_until: T + 1200,
                interval: 5,
                last_polled_at: None,
                decision: None,
                consumed_at: None,
            };
            store.put_device_code(&device).await.unwrap();
            assert_eq!(calls.take(), ["TransactWriteItems"]);

            // Pending: read, then record the poll.
            let found = store.find_device_code(&device.hash, T + 5).await.unwrap();
            assert_eq!(found.as_ref(), Some(&device));
            assert_eq!(calls.take(), ["GetItem"]);
            assert!(
                store
                    .record_device_poll(&device.hash, None, 5, T + 5)
                    .await
                    .unwrap()
            );
            assert_eq!(calls.take(), ["UpdateItem"]);

            // The browser: the user code's item, then the device code's.
            assert!(
                store
                    .find_user_code(&device.user_code_hash, T + 6)
                    .await
                    .unwrap()
                    .is_some()
            );
            assert_eq!(calls.take(), ["GetItem", "GetItem"]);
            let mut g = grant("g1");
            g.amr = vec!["pwd".into(), "otp".into(), "mfa".into()];
            let approved = DeviceDecision::Approved {
                user_id: g.user_id.clone(),
                auth_time: g.auth_time,
                amr: g.amr.clone(),
            };
            assert!(
                store
                    .decide_device_code(&device.hash, &approved, T + 7)
                    .await
                    .unwrap()
            );
            assert_eq!(calls.take(), ["UpdateItem"]);

            // Approved: read, then one transaction.
            assert!(
                store
                    .find_device_code(&device.hash, T + 10)
                    .await
                    .unwrap()
                    .is_some()
            );
            assert_eq!(calls.take(), ["GetItem"]);
            let r0 = token("r0", &g, T + 10);
            assert!(
                store
                    .redeem_device_code(&device.hash, &g, Some(&r0), T + 10)
                    .await
                    .unwrap()
            );
            assert_eq!(calls.take(), ["TransactWriteItems"]);
            // The first refresh then rotates in one transaction: the
            // redemption remembered the grant's snapshot.
            assert_eq!(
                store
                    .rotate_refresh(&r0.hash, &token("r1", &g, T + 11), 0, T + 11)
                    .await
                    .unwrap(),
                Rotated::Rotated
            );
            assert_eq!(calls.take(), ["TransactWriteItems"]);
        }

        /// The undos run only after a failed signature, outside the budget;
        /// still, each write is one transaction.
        #[tokio::test]
        async fn undos_are_one_transaction_after_their_reads() {
            let calls = Calls::default();
            let client = client(&calls).await;
            let table = table(&client, "undo").await;
            let store = DynamoStore::new(client, table);
            let g = grant("g1");
            let c = code("code", "g1");
            store.put_code(&c).await.unwrap();
            let r0 = token("r0", &g, T);
            store.redeem_code(&c.hash, &g, Some(&r0), T).await.unwrap();
            calls.take();

            assert!(
                store
                    .undo_redemption(&c.hash, "g1", Some(&r0.hash))
                    .await
                    .unwrap()
            );
            assert_eq!(calls.take(), ["TransactWriteItems"]);
            assert!(
                !store
                    .undo_redemption(&c.hash, "g1", Some(&r0.hash))
                    .await
                    .unwrap()
            );
            assert_eq!(calls.take(), ["TransactWriteItems"]);

            store
                .redeem_code(&c.hash, &g, Some(&r0), T + 1)
                .await
                .unwrap();
            let r1 = token("r1", &g, T + 10);
            store
                .rotate_refresh(&r0.hash, &r1, 5, T + 10)
                .await
                .unwrap();
            calls.take();
            assert!(store.undo_rotation(&r0.hash, &r1.hash).await.unwrap());
            assert_eq!(calls.take(), ["GetItem", "TransactWriteItems"]);

            // The leeway path reads the presented token's successor too.
            store
                .rotate_refresh(&r0.hash, &r1, 5, T + 11)
                .await
                .unwrap();
            let r2 = token("r2", &g, T + 12);
            assert_eq!(
                store
                    .rotate_refresh(&r0.hash, &r2, 5, T + 12)
                    .await
                    .unwrap(),
                Rotated::Rotated
            );
            calls.take();
            assert!(store.undo_rotation(&r0.hash, &r2.hash).await.unwrap());
            assert_eq!(calls.take(), ["GetItem", "GetItem", "TransactWriteItems"]);
        }

        #[tokio::test]
        async fn bulk_revocation_queries_the_index_and_never_scans() {
            let calls = Calls::default();
            let client = client(&calls).await;
            let table = table(&client, "revoke").await;
            let store = DynamoStore::new(client, table);
            for (i, client_id) in ["app", "app", "other"].into_iter().enumerate() {
                let mut g = grant(&format!("g{i}"));
                g.client_id = client_id.into();
                let c = code(&format!("code {i}"), &g.id);
                store.put_code(&c).await.unwrap();
                store.redeem_code(&c.hash, &g, None, T).await.unwrap();
            }
            calls.take();
            assert_eq!(store.revoke_client("app", T + 1).await.unwrap(), 2);
            assert_eq!(calls.take(), ["Query", "UpdateItem", "UpdateItem"]);
            assert_eq!(store.revoke_user("u1", T + 2).await.unwrap(), 1);
            assert_eq!(calls.take(), ["Query", "UpdateItem"]);
            assert_eq!(store.revoke_consent("u1", "app", T + 3).await.unwrap(), 0);
            assert_eq!(calls.take(), ["DeleteItem", "Query"]);
            assert!(store.list_grants("u1", T + 4).await.unwrap().is_empty());
            assert_eq!(calls.take(), ["Query"]);
        }
    }

    #[test]
    fn no_scan_anywhere() {
        // DESIGN "AWS budget": every read is a GetItem or a Query.
        let source = include_str!("dynamodb.rs");
        assert!(!source.contains(concat!("sc", "an(")));
        assert!(!source.contains(concat!(".sc", "an")));
    }
}
