"""The sync planner: every row of Klutch's ownership table and deletion matrix, and its fixed point."""

import copy
import itertools

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.plan import sync
from ansible_collections.klutch.bind.plugins.module_utils.plan.sync import (
    APP_CLUSTER,
    BOUND_ANNOTATION,
    CONTROL_PLANE,
    Mapping,
    OWNER_ANNOTATION,
    SYNCER_FINALIZER,
)

P = "cluster-abcde"
MAPPING = [{"metadata": {"name": "shop", "namespace": P}, "status": {"namespace": f"{P}-shop"}}]
SECRETS_CLAIM = {"group": "", "resource": "secrets", "version": "v1", "selector": {"owner": "Provider"}}


def instance(namespace, name, spec=None, status=None, annotations=None, finalizers=None, deleting=False):
    metadata = {"name": name, "namespace": namespace, "uid": "u-" + name, "resourceVersion": "7",
                "annotations": dict(annotations or {}), "finalizers": list(finalizers or [])}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    obj = {"apiVersion": "samples.klutch.bind/v1", "kind": "PostgresqlInstance", "metadata": metadata,
           "spec": spec if spec is not None else {"plan": "small"}}
    if status is not None:
        obj["status"] = status
    return obj


def secret(namespace, name, data=None, owner=None, labels=None):
    annotations = {OWNER_ANNOTATION: owner} if owner else {}
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations, "labels": labels or {},
                         "uid": "s-" + name, "ownerReferences": [{"kind": "PostgresqlInstance", "name": name}]},
            "data": data if data is not None else {"password": "cw=="}}


def actions(operations):
    return [(op.side, op.action, op.namespace, op.name) for op in operations]


def plan_instances(consumer, provider, mapping=None):
    return sync.plan_instances(consumer, provider, Mapping(copy.deepcopy(MAPPING if mapping is None else mapping)))


# -- instances ---------------------------------------------------------------------------------

def test_a_new_consumer_instance_gets_the_finalizer_a_bound_copy_upstream_and_the_bound_mark_in_one_pass():
    operations = plan_instances([instance("shop", "orders")], [])
    assert actions(operations) == [(APP_CLUSTER, "add_finalizer", "shop", "orders"),
                                   (CONTROL_PLANE, "create", f"{P}-shop", "orders"),
                                   (APP_CLUSTER, "annotate", "shop", "orders")]
    created = operations[1].body
    assert created["metadata"] == {"name": "orders", "namespace": f"{P}-shop",
                                   "annotations": {BOUND_ANNOTATION: "true"}}
    assert created["spec"] == {"plan": "small"} and "status" not in created


def test_an_unmapped_namespace_is_asked_for_once_and_its_objects_wait():
    operations = plan_instances([instance("cart", "a"), instance("cart", "b")], [], mapping=[])
    assert actions(operations) == [(CONTROL_PLANE, "map_namespace", "cart", "cart")]
    pending = [{"metadata": {"name": "cart", "namespace": P}}]
    assert plan_instances([instance("cart", "a")], [], mapping=pending) == []


def test_spec_goes_up_and_provider_edits_are_reverted():
    down = instance("shop", "orders", spec={"plan": "big"}, finalizers=[SYNCER_FINALIZER],
                    annotations={BOUND_ANNOTATION: "true"})
    up = instance(f"{P}-shop", "orders", spec={"plan": "small", "extra": 1}, annotations={BOUND_ANNOTATION: "true"})
    operations = plan_instances([down], [up])
    assert actions(operations) == [(CONTROL_PLANE, "update_spec", f"{P}-shop", "orders")]
    assert operations[0].body["spec"] == {"plan": "big"}


def test_status_comes_down_whole():
    down = instance("shop", "orders", finalizers=[SYNCER_FINALIZER], annotations={BOUND_ANNOTATION: "true"},
                    status={"old": True})
    up = instance(f"{P}-shop", "orders", annotations={BOUND_ANNOTATION: "true"}, status={"ready": True})
    operations = plan_instances([down], [up])
    assert actions(operations) == [(APP_CLUSTER, "update_status", "shop", "orders")]
    assert operations[0].body["status"] == {"ready": True}


@pytest.mark.parametrize("down, up, expected", [
    # consumer deletes: upstream deleted, finalizer released at once
    (instance("shop", "o", finalizers=[SYNCER_FINALIZER], deleting=True), instance(f"{P}-shop", "o"),
     [(CONTROL_PLANE, "delete", f"{P}-shop", "o"), (APP_CLUSTER, "remove_finalizer", "shop", "o")]),
    # consumer deletes while upstream is still tearing down: wait
    (instance("shop", "o", finalizers=[SYNCER_FINALIZER], deleting=True),
     instance(f"{P}-shop", "o", deleting=True), []),
    # consumer deletes and upstream is gone: release the finalizer
    (instance("shop", "o", finalizers=[SYNCER_FINALIZER], deleting=True), None,
     [(APP_CLUSTER, "remove_finalizer", "shop", "o")]),
    # provider deletes a live instance: recreated upstream
    (instance("shop", "o", finalizers=[SYNCER_FINALIZER], annotations={BOUND_ANNOTATION: "true"}), None,
     [(CONTROL_PLANE, "create", f"{P}-shop", "o")]),
    # consumer object gone, bound upstream left over (missed delete): upstream deleted
    (None, instance(f"{P}-shop", "o", annotations={BOUND_ANNOTATION: "true"}), [(CONTROL_PLANE, "delete", f"{P}-shop", "o")]),
    # provider created it: adopted downstream, marked bound upstream
    (None, instance(f"{P}-shop", "o", status={"ready": True}), [(APP_CLUSTER, "create", "shop", "o")]),
    # provider object already going, nothing down: leave it
    (None, instance(f"{P}-shop", "o", annotations={BOUND_ANNOTATION: "true"}, deleting=True), []),
])
def test_the_deletion_matrix(down, up, expected):
    assert actions(plan_instances([down] if down else [], [up] if up else [])) == expected


def test_an_adopted_copy_carries_the_finalizer_so_an_early_delete_still_reaches_upstream():
    [create] = plan_instances([], [instance(f"{P}-shop", "o")])
    assert create.body["metadata"]["finalizers"] == [SYNCER_FINALIZER]
    # The consumer deletes it before any other pass: the delete goes up instead of a second adopt.
    held = dict(create.body, metadata=dict(create.body["metadata"], deletionTimestamp="2026-01-01T00:00:00Z"))
    assert actions(plan_instances([held], [instance(f"{P}-shop", "o")])) == [
        (CONTROL_PLANE, "delete", f"{P}-shop", "o"), (APP_CLUSTER, "remove_finalizer", "shop", "o")]


def test_a_mapping_whose_consumer_namespace_is_gone_is_removed():
    mapping = Mapping(MAPPING + [{"metadata": {"name": "gone", "namespace": P}}])
    assert actions(sync.plan_namespace_removals(mapping, {"shop", "default"})) == [
        (CONTROL_PLANE, "unmap_namespace", "gone", "gone")]
    assert sync.plan_namespace_removals(mapping, {"shop", "gone"}) == []


def test_objects_outside_mapped_namespaces_are_not_touched():
    stray = instance("cluster-other-shop", "o", annotations={BOUND_ANNOTATION: "true"})
    assert plan_instances([], [stray]) == []


# -- claimed objects ---------------------------------------------------------------------------

def plan_claims(claim, consumer, provider):
    return sync.plan_claims(claim, "secrets", consumer, provider, Mapping(copy.deepcopy(MAPPING)))


@pytest.mark.parametrize("control_plane_mark, consumer_mark, provider_exists, consumer_exists, owner", [
    ("Provider", "Consumer", True, True, "Provider"),
    ("Consumer", None, True, True, "Consumer"),
    (None, None, True, False, "Provider"),
    (None, "Consumer", True, True, "Provider"),  # a consumer's own mark never outranks the control plane
    (None, "Provider", False, True, "Provider"),
    (None, None, False, True, "Consumer"),
])
def test_the_ownership_table(control_plane_mark, consumer_mark, provider_exists, consumer_exists, owner):
    up = secret(f"{P}-shop", "creds", owner=control_plane_mark) if provider_exists else None
    down = secret("shop", "creds", owner=consumer_mark) if consumer_exists else None
    assert sync.claim_owner({}, up, down) == owner


def test_provider_owned_secrets_come_down_cleaned_and_marked():
    operations = plan_claims(SECRETS_CLAIM, [], [secret(f"{P}-shop", "orders-creds")])
    assert actions(operations) == [(APP_CLUSTER, "create", "shop", "orders-creds")]
    copied = operations[0].body
    assert copied["metadata"] == {"name": "orders-creds", "namespace": "shop", "labels": {},
                                  "annotations": {OWNER_ANNOTATION: "Provider"}}
    assert copied["data"] == {"password": "cw=="} and copied["type"] == "Opaque"


@pytest.mark.parametrize("consumer_copy, expected", [
    (secret("shop", "creds", data={"password": "ZWRpdGVk"}, owner="Provider"), [(APP_CLUSTER, "replace", "shop", "creds")]),
    (secret("shop", "creds", owner="Provider", labels={"added": "by-hand"}), [(APP_CLUSTER, "replace", "shop", "creds")]),
    (None, [(APP_CLUSTER, "create", "shop", "creds")]),
    (secret("shop", "creds", owner="Provider"), []),
])
def test_consumer_edits_and_deletions_of_provider_owned_objects_are_reverted(consumer_copy, expected):
    up = secret(f"{P}-shop", "creds", owner="Provider")
    assert actions(plan_claims(SECRETS_CLAIM, [consumer_copy] if consumer_copy else [], [up])) == expected


def test_a_provider_deletion_removes_the_copy_but_not_what_the_consumer_made():
    assert actions(plan_claims(SECRETS_CLAIM, [secret("shop", "creds", owner="Provider")], [])) == [
        (APP_CLUSTER, "delete", "shop", "creds")]


def test_under_provider_ownership_a_consumers_own_secret_is_never_uploaded():
    assert plan_claims(SECRETS_CLAIM, [secret("shop", "private")], []) == []


def test_consumer_owned_claims_are_the_mirror_image():
    claim = {"resource": "configmaps", "selector": {"owner": "Consumer"}}
    operations = plan_claims(claim, [secret("shop", "settings")], [])
    assert actions(operations) == [(CONTROL_PLANE, "create", f"{P}-shop", "settings")]
    assert actions(plan_claims(claim, [], [secret(f"{P}-shop", "settings", owner="Consumer")])) == [
        (CONTROL_PLANE, "delete", f"{P}-shop", "settings")]


def test_names_and_label_selectors_limit_a_claim():
    claim = dict(SECRETS_CLAIM, selector={"owner": "Provider", "names": ["wanted"],
                                          "labelSelectors": [{"tier": "db"}, {"tier": "cache"}]})
    provider = [secret(f"{P}-shop", "wanted", labels={"tier": "cache"}), secret(f"{P}-shop", "other"),
                secret(f"{P}-shop", "wanted-too", labels={"tier": "db"})]
    assert [op.name for op in plan_claims(claim, [], provider) if op.action == "create"] == ["wanted"]


def test_a_consumer_namesake_cannot_pull_down_a_provider_object_that_the_claim_does_not_select():
    claim = dict(SECRETS_CLAIM, selector={"owner": "Provider", "labelSelectors": [{"tier": "db"}]})
    unselected = secret(f"{P}-shop", "admin-creds", labels={"tier": "internal"})
    bait = secret("shop", "admin-creds", owner="Provider", labels={"tier": "db"})
    assert plan_claims(claim, [bait], [unselected]) == []
    assert plan_claims(dict(claim, selector={"owner": "Provider", "names": ["orders-creds"]}),
                       [secret("shop", "admin-creds", owner="Provider")], [secret(f"{P}-shop", "admin-creds")]) == []


def test_a_consumer_marking_its_own_object_consumer_owned_cannot_replace_the_providers():
    provider = secret(f"{P}-shop", "creds")
    hostile = secret("shop", "creds", data={"password": "aGFja2Vk"}, owner="Consumer")
    assert plan_claims({"resource": "secrets"}, [hostile], [provider]) == []


@pytest.mark.parametrize("claim", [SECRETS_CLAIM, {"resource": "secrets"}])
def test_an_unmarked_consumer_object_with_a_provider_namesake_is_neither_overwritten_nor_deleted(claim):
    mine = secret("shop", "creds", data={"password": "bWluZQ=="})
    assert plan_claims(claim, [mine], [secret(f"{P}-shop", "creds")]) == []
    # Once the provider deletes its namesake, the consumer's object stays (and without a fixed owner it goes up).
    assert not [op for op in plan_claims(claim, [mine], []) if op.side == APP_CLUSTER and op.action != "annotate"]


@pytest.mark.parametrize("owner", ["Provider", "Consumer"])
def test_system_objects_never_cross(owner):
    claim = {"resource": "configmaps", "selector": {"owner": owner}}
    root_ca = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"ca.crt": "x"}}
    up = dict(root_ca, metadata={"name": "kube-root-ca.crt", "namespace": f"{P}-shop"})
    down = dict(root_ca, data={"ca.crt": "y"}, metadata={"name": "kube-root-ca.crt", "namespace": "shop"})
    assert sync.plan_claims(claim, "configmaps", [down], [up], Mapping(copy.deepcopy(MAPPING))) == []
    token = dict(secret("shop", "sa-token"), type="kubernetes.io/service-account-token")
    assert plan_claims(dict(SECRETS_CLAIM, selector={"owner": owner}), [token], []) == []


# -- planning the result of a plan yields nothing ------------------------------------------------

class World:
    """Both clusters in memory, with the deletion semantics of an API server (finalizers hold objects)."""

    def __init__(self, consumer, provider, service_namespaces):
        self.objects = {APP_CLUSTER: _index(consumer), CONTROL_PLANE: _index(provider)}
        self.service_namespaces = copy.deepcopy(service_namespaces)

    def listing(self, side):
        return [copy.deepcopy(obj) for obj in self.objects[side].values()]

    def run(self, operations):
        for op in operations:
            store = self.objects[op.side]
            key = (op.namespace, op.name)
            current = store.get(key)
            if op.action == "map_namespace":
                self.service_namespaces.append({"metadata": {"name": op.name, "namespace": P},
                                                "status": {"namespace": f"{P}-{op.name}"}})
            elif op.action == "create" and current is None:
                store[key] = copy.deepcopy(op.body)
            elif op.action == "replace":
                store[key] = copy.deepcopy(op.body)
            elif op.action == "update_spec" and current is not None:
                current["spec"] = copy.deepcopy(op.body["spec"])
                current["metadata"].setdefault("annotations", {}).update(op.body["metadata"]["annotations"])
            elif op.action == "update_status" and current is not None:
                current["status"] = copy.deepcopy(op.body["status"])
            elif op.action == "annotate" and current is not None:
                current["metadata"].setdefault("annotations", {}).update(op.body)
            elif op.action == "add_finalizer" and current is not None:
                current["metadata"].setdefault("finalizers", []).append(SYNCER_FINALIZER)
            elif op.action == "remove_finalizer" and current is not None:
                current["metadata"]["finalizers"].remove(SYNCER_FINALIZER)
                if not current["metadata"]["finalizers"] and current["metadata"].get("deletionTimestamp"):
                    del store[key]
            elif op.action == "delete" and current is not None:
                if current["metadata"].get("finalizers"):
                    current["metadata"]["deletionTimestamp"] = "now"
                else:
                    del store[key]


def _index(objects):
    return dict(((obj["metadata"].get("namespace"), obj["metadata"]["name"]), copy.deepcopy(obj)) for obj in objects)


def plan_world(world):
    mapping = Mapping(world.service_namespaces)
    consumer_instances = [o for o in world.listing(APP_CLUSTER) if o["kind"] == "PostgresqlInstance"]
    provider_instances = [o for o in world.listing(CONTROL_PLANE) if o["kind"] == "PostgresqlInstance"]
    operations = sync.plan_instances(consumer_instances, provider_instances, mapping)
    operations += sync.plan_claims(SECRETS_CLAIM, "secrets", [o for o in world.listing(APP_CLUSTER) if o["kind"] == "Secret"],
                                   [o for o in world.listing(CONTROL_PLANE) if o["kind"] == "Secret"], mapping)
    return operations


CONSUMER_SIDES = [
    [],
    [instance("shop", "a")],
    [instance("shop", "a", finalizers=[SYNCER_FINALIZER], deleting=True)],
    [instance("cart", "b")],
    [secret("shop", "private"), secret("shop", "creds", data={"x": "eQ=="}, owner="Provider")],
]
PROVIDER_SIDES = [
    [],
    [instance(f"{P}-shop", "a", spec={"plan": "big"}, status={"ready": True})],
    [instance(f"{P}-shop", "c", status={"ready": False})],
    [instance(f"{P}-shop", "d", annotations={BOUND_ANNOTATION: "true"})],
    [secret(f"{P}-shop", "creds")],
]


@pytest.mark.parametrize("consumer, provider", list(itertools.product(CONSUMER_SIDES, PROVIDER_SIDES)))
def test_planning_the_result_of_a_plan_yields_nothing(consumer, provider):
    world = World(consumer, provider, MAPPING)
    for _round in range(4):  # a namespace mapping, then its objects, then deletions that finalizers held
        operations = plan_world(world)
        if not operations:
            break
        world.run(operations)
    assert plan_world(world) == []


def test_without_prune_orphans_stay():
    orphan = instance(f"{P}-shop", "o", annotations={BOUND_ANNOTATION: "true"})
    assert sync.plan_instances([], [orphan], Mapping(copy.deepcopy(MAPPING)), prune=False) == []
    copy_left = secret("shop", "creds", owner="Provider")
    assert sync.plan_claims(SECRETS_CLAIM, "secrets", [copy_left], [], Mapping(copy.deepcopy(MAPPING)), prune=False) == []


def test_fields_the_provider_adds_to_a_spec_are_not_reverted_but_edits_of_consumer_fields_are():
    down = instance("shop", "o", spec={"plan": "small", "parameters": {"size": 1}}, finalizers=[SYNCER_FINALIZER],
                    annotations={BOUND_ANNOTATION: "true"})
    added = instance(f"{P}-shop", "o", spec={"plan": "small", "parameters": {"size": 1}, "resourceRef": {"name": "x"}},
                     annotations={BOUND_ANNOTATION: "true"})
    assert plan_instances([down], [added]) == []
    edited = copy.deepcopy(added)
    edited["spec"]["parameters"]["size"] = 2
    assert actions(plan_instances([down], [edited])) == [(CONTROL_PLANE, "update_spec", f"{P}-shop", "o")]


def test_without_a_fixed_owner_the_source_is_marked_as_klutch_does():
    operations = plan_claims({"resource": "secrets"}, [], [secret(f"{P}-shop", "creds")])
    assert actions(operations) == [(CONTROL_PLANE, "annotate", f"{P}-shop", "creds"), (APP_CLUSTER, "create", "shop", "creds")]
    assert operations[0].body == {OWNER_ANNOTATION: "Provider"}


def test_fields_and_marks_that_belong_to_the_platform_never_go_up():
    platform = {"compositionRef": {"name": "premium"}, "resourceRef": {"name": "someone-elses-db"},
                "compositionSelector": {"matchLabels": {"tier": "gold"}}}
    down = instance("shop", "o", spec=dict(platform, plan="small"), finalizers=[SYNCER_FINALIZER],
                    annotations={"crossplane.io/external-name": "prod-db", "team": "orders",
                                 "composition.crossplane.io/paused": "true"})
    down["metadata"]["labels"] = {"crossplane.io/claim-name": "x", "app": "orders"}
    created = [op for op in plan_instances([down], []) if op.action == "create"][0].body
    assert created["spec"] == {"plan": "small"}
    assert created["metadata"]["annotations"] == {"team": "orders", BOUND_ANNOTATION: "true"}
    assert created["metadata"]["labels"] == {"app": "orders"}
    # Upstream, Crossplane fills in its own compositionRef: the consumer's differing one is not sent up.
    up = instance(f"{P}-shop", "o", spec={"plan": "small", "compositionRef": {"name": "standard"}},
                  annotations={BOUND_ANNOTATION: "true"})
    down["metadata"]["annotations"][BOUND_ANNOTATION] = "true"
    assert [op.action for op in plan_instances([down], [up])] == []
    down["spec"]["plan"] = "large"
    update = [op for op in plan_instances([down], [up]) if op.action == "update_spec"][0]
    assert update.body["spec"] == {"plan": "large"}


def test_an_instance_without_a_spec_is_in_step():
    down = instance("shop", "o", finalizers=[SYNCER_FINALIZER], annotations={BOUND_ANNOTATION: "true"})
    up = instance(f"{P}-shop", "o", annotations={BOUND_ANNOTATION: "true"})
    del down["spec"], up["spec"]
    assert plan_instances([down], [up]) == []


def test_a_copy_that_lost_a_selected_label_is_repaired_not_created_again():
    claim = dict(SECRETS_CLAIM, selector={"owner": "Provider", "labelSelectors": [{"tier": "db"}]})
    up = secret(f"{P}-shop", "creds", labels={"tier": "db"})
    down = secret("shop", "creds", owner="Provider")
    assert actions(plan_claims(claim, [down], [up])) == [(APP_CLUSTER, "replace", "shop", "creds")]


def cluster_instance(name, **fields):
    obj = instance(None, name, **fields)
    del obj["metadata"]["namespace"]
    return obj


def plan_cluster(consumer, provider):
    return sync.plan_cluster_instances(consumer, provider, P, "ns-uid")


def test_a_cluster_scoped_instance_is_prefixed_marked_and_owned_by_the_consumer_namespace_upstream():
    operations = plan_cluster([cluster_instance("global")], [])
    assert actions(operations) == [(APP_CLUSTER, "add_finalizer", None, "global"), (CONTROL_PLANE, "create", None, f"{P}-global"),
                                   (APP_CLUSTER, "annotate", None, "global")]
    created = operations[1].body["metadata"]
    assert created["name"] == f"{P}-global" and "namespace" not in created
    assert created["annotations"] == {BOUND_ANNOTATION: "true", sync.CLUSTER_NAMESPACE_ANNOTATION: P}
    assert created["ownerReferences"] == [{"apiVersion": "v1", "kind": "Namespace", "name": P, "uid": "ns-uid"}]


def test_cluster_scoped_pairs_follow_the_namespaced_rules_under_the_prefixed_name():
    marks = {BOUND_ANNOTATION: "true", sync.CLUSTER_NAMESPACE_ANNOTATION: P}
    down = cluster_instance("global", spec={"plan": "big"}, annotations={BOUND_ANNOTATION: "true"},
                            finalizers=[SYNCER_FINALIZER])
    up = cluster_instance(f"{P}-global", spec={"plan": "small"}, annotations=marks)
    [update] = plan_cluster([down], [up])
    assert actions([update]) == [(CONTROL_PLANE, "update_spec", None, f"{P}-global")]
    assert update.body["metadata"] == {"name": f"{P}-global", "annotations": marks}
    in_step = cluster_instance(f"{P}-global", spec={"plan": "big"}, annotations=marks)
    assert plan_cluster([down], [in_step]) == []
    gone = cluster_instance("global", annotations={BOUND_ANNOTATION: "true"}, finalizers=[SYNCER_FINALIZER],
                            deleting=True)
    assert actions(plan_cluster([gone], [in_step])) == [
        (CONTROL_PLANE, "delete", None, f"{P}-global"), (APP_CLUSTER, "remove_finalizer", None, "global")]


def test_cluster_scoped_adopt_strips_the_prefix_and_other_consumers_objects_are_left_alone():
    made = cluster_instance(f"{P}-made", annotations={sync.CLUSTER_NAMESPACE_ANNOTATION: P})
    foreign = cluster_instance("cluster-zzzzz-made")
    [adopt] = plan_cluster([], [made, foreign])
    assert actions([adopt]) == [(APP_CLUSTER, "create", None, "made")]
    assert adopt.body["metadata"]["annotations"] == {BOUND_ANNOTATION: "true"}
    assert adopt.body["metadata"]["finalizers"] == [SYNCER_FINALIZER]
    missed = cluster_instance(f"{P}-left", annotations={BOUND_ANNOTATION: "true"})
    assert actions(plan_cluster([], [missed])) == [(CONTROL_PLANE, "delete", None, f"{P}-left")]


def test_a_copy_whose_secret_type_changed_is_made_again():
    source = dict(secret(f"{P}-shop", "creds"), type="kubernetes.io/basic-auth")
    copy_ = dict(secret("shop", "creds", owner="Provider"), type="Opaque")
    copy_["metadata"]["resourceVersion"] = "12"
    assert actions(plan_claims(SECRETS_CLAIM, [copy_], [source])) == [
        (APP_CLUSTER, "delete", "shop", "creds"), (APP_CLUSTER, "create", "shop", "creds")]


def test_every_top_level_field_of_a_claimed_kind_is_content_and_replaced_at_the_listed_version():
    source = dict(secret(f"{P}-shop", "settings"), spec={"replicas": 2})
    copy_ = dict(secret("shop", "settings", owner="Provider"), spec={"replicas": 1})
    copy_["metadata"]["resourceVersion"] = "12"
    [replace] = plan_claims(SECRETS_CLAIM, [copy_], [source])
    assert (replace.action, replace.body["spec"]) == ("replace", {"replicas": 2})
    assert replace.body["metadata"]["resourceVersion"] == "12"
    in_step = dict(copy_, spec={"replicas": 2})
    assert plan_claims(SECRETS_CLAIM, [in_step], [source]) == []
