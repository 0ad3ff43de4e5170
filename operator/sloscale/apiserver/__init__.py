"""A Kubernetes API server emulator: real HTTP on loopback, the real server's semantics.

No kube-apiserver runs on the machines that build and test sloscale, so the operator's tests,
the sandbox (`make demo`) and the fault suite stand on this emulator. kopf, the official
`kubernetes` client and kubectl use it unchanged through the kubeconfig it writes. It is our
own small server on aiohttp rather than an adapted mock: storage, resourceVersions and watch
semantics are simple enough to get exactly right when they are ours.

What it does (one module each): `store` (objects, one resourceVersion counter, per-storage
event log; 410 Gone past its history), `resources` (built-in kinds, CRD-registered kinds),
`objects` (create/update/patch/delete semantics, generation, status and scale subresources,
finalizers, ownerReference cascading, namespaces), `validation` (CRD schema: pruning,
defaulting, openAPIV3Schema via jsonschema, `x-kubernetes-validations` CEL via cel-python),
`builtins` (names, defaults and checks of built-in kinds, Event versions, CRD checks), `patch`
(merge, strategic merge, JSON patch), `selectors`, `tables` (kubectl's server-side printing),
`openapi` (for kubectl explain and field validation), `faults` (latency, error statuses, dropped
watches), `server` (HTTP routes, discovery, lists), `watch` (watch streams, bookmarks, 410 Gone),
`kubeconfig`, `api` (`ApiServer`), `main` (the `sloscale sandbox apiserver` command).

Deliberately not emulated: authentication, authorization and RBAC (every request is allowed);
TLS; server-side apply and managedFields; admission webhooks and admission plugins (no
LimitRanges, quotas, service accounts tokens); controllers — no ReplicaSet or Deployment
controller, no scheduler, no kubelet, no endpoints controller: Deployment status and Pods are
written by whoever stands in for them (the sandbox); pod subresources that need a kubelet
(log, exec, port-forward, eviction), nodes and proxies; garbage collection beyond ownerReferences
cascading (Background, Foreground, Orphan); pod graceful termination (a pod without finalizers
goes at once); the CRD instance-cleanup finalizer; CRD conversion webhooks (versions of one CRD
share one stored shape); protobuf and CBOR; aggregated discovery (clients fall back to the
legacy documents); `/openapi/v2` and upstream schemas of built-in kinds (OpenAPI v3 describes
custom resources fully, built-ins as skeletons); the CEL cost budget and CEL libraries beyond a
few string and list functions; label-value and annotation-size validation.
"""

from sloscale.apiserver.api import ApiServer
from sloscale.apiserver.faults import Fault, Faults

__all__ = ["ApiServer", "Fault", "Faults"]
