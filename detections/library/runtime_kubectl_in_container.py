"""kubectl run inside a container outside the images made to run it: someone in a compromised pod using its
service-account token, or a stolen kubeconfig, to explore and change the cluster."""

from fnmatch import fnmatchcase
from typing import Any

from vigil.detections.sdk import EventDetection, Example, container_label
from vigil.detections.sdk.prefilters import program_name
from vigil.event import Event
from vigil.sources.falco.fixtures import falco_record
from vigil.sources.tetragon.fixtures import tetragon_record

#: Kubernetes command-line clients (Falco's k8s_client_binaries has kubectl; OpenShift's oc is the same client).
CLIENTS = frozenset({"kubectl", "oc", "kubectl.exe"})
#: Images that exist to run kubectl (CI deploy steps, jobs and operators' hooks), as fnmatch patterns.
KUBECTL_IMAGES = ["*bitnami/kubectl*", "*rancher/kubectl*", "*alpine/k8s*", "*k8s-kubectl*", "*/kubectl:*",
                  "*argoproj/argocd*", "*fluxcd/*", "*gitlab-runner*", "*gitlab-org/*"]


def runs_kubectl(event: Event, params: dict[str, Any]) -> bool:
    if not (event.container.id or event.k8s.container_id) or program_name(event) not in CLIENTS:
        return False
    image = event.k8s.image or event.container.image
    return not any(fnmatchcase(image, pattern) for pattern in params["allowed_images"])


def kubectl_context(event: Event, params: dict[str, Any]) -> dict[str, Any]:
    return {"exe": event.actor.exe, "command": " ".join(event.actor.args), "parent_exe": event.actor.parent_exe,
            "where": container_label(event), "service_account": event.k8s.service_account,
            "image": event.k8s.image or event.container.image}


DETECTION = EventDetection(
    id="runtime.kubectl_in_container",
    title="kubectl run in a container",
    alert_title="{program} run in {where}: {command}",
    description=(
        "kubectl (or oc) ran in a container whose image is not one made to run it. Application images do not "
        "ship or download kubectl; an intruder in a pod fetches it to use the pod's service-account token "
        "(kubectl auth can-i --list, get secrets, exec into other pods). Its API calls are in the audit log; this "
        "names the pod and process they came from. Low on its own: operators' debug pods and CI jobs run it too "
        "(list their images in allowed_images)."
    ),
    severity="low",
    mitre=["T1609", "T1613"],
    tags=["runtime", "discovery", "execution"],
    references=["https://attack.mitre.org/techniques/T1613/"],
    false_positives=["CI jobs, operators' hooks and debug pods running kubectl from images not in allowed_images."],
    kinds=["process.exec"],
    exe_names=CLIENTS,
    params={"allowed_images": KUBECTL_IMAGES},
    match=runs_kubectl,
    context=kubectl_context,
    dedup="{cluster}/{namespace}/{pod}/{where}",
    examples=[
        Example(
            name="Falco: kubectl auth can-i in a wordpress pod",
            source="falco",
            fires=True,
            record=falco_record("The docker client is executed in a container", "execve",
                                {"proc.exepath": "/tmp/kubectl", "proc.name": "kubectl",
                                 "proc.cmdline": "kubectl auth can-i --list", "proc.pname": "bash"},
                                image=("docker.io/library/wordpress", "6.5")),
        ),
        Example(name="kubectl get secrets in an nginx pod (Tetragon)", source="tetragon", fires=True,
                record=tetragon_record(binary="/usr/local/bin/kubectl", arguments="get secrets -A",
                                       parent="/bin/sh")),
        Example(name="a CI deploy step in bitnami/kubectl", source="tetragon", fires=False,
                record=tetragon_record(binary="/opt/bitnami/kubectl/bin/kubectl", arguments="apply -f deploy.yaml",
                                       image="docker.io/bitnami/kubectl:1.31")),
        Example(name="kubectl on the node", source="tetragon", fires=False,
                record=tetragon_record(binary="/usr/bin/kubectl", arguments="get nodes", host=True)),
    ],
)
