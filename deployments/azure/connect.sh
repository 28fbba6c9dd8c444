#!/usr/bin/env bash
# Connects an Azure Container Registry to the bridge with the az CLI: an Event Grid system topic
# subscription (CloudEvents 1.0, retries, dead letters) and, with --webhook, an ACR native webhook.
# Pick one channel per registry: the same push through both is stored as two events.
#
#   deployments/azure/connect.sh -g my-rg -r myregistry -u https://bridge.example.com \
#       --entra <tenant-id> api://acr-nats-bridge --dead-letter mystorage
#   BRIDGE_TOKEN=... deployments/azure/connect.sh -g my-rg -r myregistry -u https://bridge.example.com \
#       --header --webhook --dead-letter mystorage
#
# With no public endpoint: an Event Grid namespace the bridge pulls from (deployments/azure/namespace.bicep),
# printing the BRIDGE_NAMESPACE_* settings, with --dead-letter for what the namespace gives up on:
#   deployments/azure/connect.sh -g my-rg -r myregistry --namespace myregistry-events [--dead-letter mystorage]
#
# --redriver <object-id> gives that identity Storage Blob Data Owner on the dead-letter container, for
# `bridge redrive blobs` (read, list, and the blob index tags that mark what was redriven).
set -euo pipefail

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

rg="" registry="" url="" mode="" tenant="" app="" webhook=false storage="" container="acr-events-deadletter" namespace="" redriver=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -g) rg="$2"; shift 2 ;;
    -r) registry="$2"; shift 2 ;;
    -u) url="${2%/}"; shift 2 ;;
    --entra) mode=entra; tenant="$2"; app="$3"; shift 3 ;;
    --header) mode=header; shift ;;
    --webhook) webhook=true; shift ;;
    --dead-letter) storage="$2"; shift 2 ;;
    --namespace) namespace="$2"; shift 2 ;;
    --redriver) redriver="$2"; shift 2 ;;
    *) usage ;;
  esac
done

if [[ -n "$namespace" ]]; then
  [[ -n "$rg" && -n "$registry" ]] || usage
  az deployment group create -g "$rg" -n acr-nats-bridge-namespace -f "$(dirname "$0")/namespace.bicep" \
    -p registryName="$registry" namespaceName="$namespace" deadLetterStorageAccountName="$storage" \
       deadLetterContainer="$container" redrivePrincipalId="$redriver" -o none
  out() { az deployment group show -g "$rg" -n acr-nats-bridge-namespace --query "properties.outputs.$1.value" -o tsv; }
  echo "BRIDGE_NAMESPACE_ENDPOINT=$(out endpoint)"
  echo "BRIDGE_NAMESPACE_TOPIC=$(out topic)"
  echo "BRIDGE_NAMESPACE_SUBSCRIPTION=$(out subscription)"
  echo "BRIDGE_NAMESPACE_KEY=$(az eventgrid namespace list-key -g "$rg" -n "$namespace" --query key1 -o tsv)"
  exit 0
fi

[[ -n "$rg" && -n "$registry" && -n "$url" && -n "$mode" && -n "$storage" ]] || usage
if [[ "$mode" == header || "$webhook" == true ]]; then
  : "${BRIDGE_TOKEN:?set BRIDGE_TOKEN to one of the BRIDGE_AUTH_TOKENS of the bridge}"
fi

registry_id=$(az acr show -g "$rg" -n "$registry" --query id -o tsv)
storage_id=$(az storage account show -g "$rg" -n "$storage" --query id -o tsv)
location=$(az acr show -g "$rg" -n "$registry" --query location -o tsv)

az storage container create --account-name "$storage" --name "$container" --auth-mode login -o none

topic="$registry-events"
az eventgrid system-topic create -g "$rg" -n "$topic" -l "$location" \
  --topic-type Microsoft.ContainerRegistry.Registries --source "$registry_id" \
  --identity systemassigned -o none
principal=$(az eventgrid system-topic show -g "$rg" -n "$topic" --query identity.principalId -o tsv)
az role assignment create --assignee-object-id "$principal" --assignee-principal-type ServicePrincipal \
  --role "Storage Blob Data Contributor" --scope "$storage_id" -o none

auth=()
if [[ "$mode" == entra ]]; then
  auth=(--azure-active-directory-tenant-id "$tenant" --azure-active-directory-application-id-or-uri "$app")
else
  auth=(--delivery-attribute-mapping Authorization static "Bearer $BRIDGE_TOKEN" true)
fi

# The bridge answers Event Grid's validation (an OPTIONS for the CloudEvents schema) while this runs.
az eventgrid system-topic event-subscription create -g "$rg" --system-topic-name "$topic" -n to-nats \
  --endpoint "$url/eventgrid" --endpoint-type webhook \
  --event-delivery-schema cloudeventschemav1_0 \
  --included-event-types Microsoft.ContainerRegistry.ImagePushed Microsoft.ContainerRegistry.ImageDeleted \
                         Microsoft.ContainerRegistry.ChartPushed Microsoft.ContainerRegistry.ChartDeleted \
  --max-delivery-attempts 30 --event-ttl 1440 \
  --deadletter-identity systemassigned \
  --deadletter-identity-endpoint "$storage_id/blobServices/default/containers/$container" \
  "${auth[@]}" -o none
echo "Event Grid subscription to-nats -> $url/eventgrid"
echo "Dead letters -> $storage/$container; bring them back with: bridge redrive blobs --container https://$storage.blob.core.windows.net/$container"
if [[ -n "$redriver" ]]; then
  az role assignment create --assignee-object-id "$redriver" --role "Storage Blob Data Owner" \
    --scope "$storage_id/blobServices/default/containers/$container" -o none
fi

if [[ "$webhook" == true ]]; then
  az acr webhook create -r "$registry" -n tonats \
    --uri "$url/webhooks/acr/$registry" \
    --actions push delete chart_push chart_delete quarantine \
    --headers "Authorization=Bearer $BRIDGE_TOKEN" -o none
  az acr webhook ping -r "$registry" -n tonats -o none
  echo "ACR webhook tonats -> $url/webhooks/acr/$registry (pinged: watch acr.ping.$registry)"
fi
