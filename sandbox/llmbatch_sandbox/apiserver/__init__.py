"""A Kubernetes API emulator for the sandbox: kopf, the ``kubernetes`` client and ``kubectl``
use it as they would a cluster. Plain HTTP on one port, no authentication.

Usage::

    server = ApiServer()            # host="127.0.0.1", port=0 (a free port)
    url = await server.start()      # also server.url
    ...
    await server.stop()

Standalone: ``python -m llmbatch_sandbox.apiserver --port 0 --kubeconfig PATH``; in tests,
``ThreadedApiServer`` runs one on its own loop in a background thread.

Served: namespaces, customresourcedefinitions and the custom resources they define (served as
soon as the CRD exists, removed with it), batch/v1 jobs, pods (+status, +log, +binding), core/v1
and events.k8s.io/v1 events (one storage), secrets, configmaps, services, serviceaccounts,
nodes, coordination.k8s.io/v1 leases; and, stored for charts and manifests with no controller
acting on them: deployments, RBAC roles and bindings, PVCs, PDBs, priority classes, network
policies. Semantics follow Kubernetes: discovery, list/watch with a global resourceVersion (410
when a watch resumes from compacted history), label and field selectors, limit/continue,
bookmarks, generateName, optimistic concurrency, merge/JSON/strategic patches (server-side
apply approximated as create-or-merge), status subresources, generation, CRD schema
pruning/defaulting/validation and CEL rules (``fieldValidation=Strict``, as kubectl sends it,
turns unknown fields into a 400), finalizers, ownerReference garbage collection, namespace
cleanup, Table output, OpenAPI v3 documents for CRDs (``kubectl explain``). Pod specs are
immutable except images, as on a cluster. Bodies are JSON or YAML; of protobuf, only what
``kubectl create namespace|configmap|secret|serviceaccount|job`` sends is understood (other
``kubectl create <kind>`` generators get 415: use ``kubectl apply -f``; ``kubectl run``
sends JSON and works).

For the kubelet (same process and loop, or any thread):

* ``server.append_pod_log(namespace, pod, data: bytes, container=None)`` appends output that
  ``GET .../pods/<pod>/log`` serves (``follow=true`` streams until the pod is Succeeded,
  Failed or deleted). From another process: ``POST /sandbox/logs/<ns>/<pod>/<container>``.
* ``POST pods/<pod>/binding`` sets ``spec.nodeName`` (the scheduler's way; 409 once bound).
* Deleting a pod that has ``spec.nodeName`` and is not Succeeded/Failed is graceful, as in
  Kubernetes: the pod gets ``deletionTimestamp`` and stays until the kubelet, after stopping
  the process, deletes it again with ``gracePeriodSeconds=0``.
* Deleting a batch/v1 Job without a propagationPolicy orphans its pods (Kubernetes' default
  for that API); pass ``propagationPolicy=Background`` (kubectl does) to delete them.

For the chaos tests: ``server.faults.inject(code, times=1, verb=None, resource=None,
namespace=None, name=None, retry_after=None)`` fails the next matching requests (a 410 on a
watch is an in-stream ERROR event); ``server.close_watches(resource=None)`` ends open watches;
``server.expire_history()`` makes every resumed watch get 410. Over HTTP:
``POST /sandbox/faults`` (JSON with the same keys), ``DELETE /sandbox/faults``,
``POST /sandbox/close-watches``, ``POST /sandbox/expire-history``.
"""

from llmbatch_sandbox.apiserver.server import ApiServer, kubeconfig_yaml, write_kubeconfig
from llmbatch_sandbox.apiserver.threaded import ThreadedApiServer

__all__ = ["ApiServer", "ThreadedApiServer", "kubeconfig_yaml", "write_kubeconfig"]
