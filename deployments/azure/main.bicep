// Connects an Azure Container Registry to the bridge, both ways the registry can tell:
//   1. an Event Grid system topic on the registry with a subscription that delivers CloudEvents 1.0 to
//      https://<bridge>/eventgrid, authenticated with Entra ID or a shared secret header, with a retry
//      policy and a dead-letter container;
//   2. optionally, an ACR native webhook to https://<bridge>/webhooks/acr/<registry> with the secret header.
// Pick one channel per registry: the same push through both is two events with different ids.
//
//   az deployment group create -g <rg> -f deployments/azure/main.bicep \
//     -p registryName=myregistry bridgeUrl=https://bridge.example.com authMode=entra \
//        entraTenantId=<tenant> entraAppIdOrUri=api://acr-nats-bridge \
//        deadLetterStorageAccountName=mystorage
// What Event Grid gives up on (after a day of retries, or at once on a 400 or 413) lands in the dead-letter
// container as blobs; `bridge redrive blobs` brings it back (docs/operations.md, "When Event Grid gives up").

@description('Name of the existing container registry.')
param registryName string

@description('Base URL of the bridge, https, without a trailing slash.')
param bridgeUrl string

@description('How Event Grid authenticates: entra (secure webhook delivery) or header (BRIDGE_AUTH_TOKENS).')
@allowed(['entra', 'header'])
param authMode string = 'entra'

@description('Tenant of the bridge\'s Entra app (authMode entra).')
param entraTenantId string = ''

@description('Application ID URI or client id of the bridge\'s Entra app (authMode entra).')
param entraAppIdOrUri string = ''

@secure()
@description('One of the bridge\'s BRIDGE_AUTH_TOKENS (authMode header, and the native webhook).')
param bridgeToken string = ''

@description('Also create the ACR native webhook (needs bridgeToken).')
param createNativeWebhook bool = false

@description('Existing storage account for events Event Grid could not deliver.')
param deadLetterStorageAccountName string

@description('Blob container for dead-lettered events.')
param deadLetterContainer string = 'acr-events-deadletter'

@description('Object id of the identity that runs `bridge redrive blobs` (a person or a job), given Storage Blob Data Owner on the dead-letter container: read, list, and the blob index tags that mark what was redriven. Empty grants none.')
param redrivePrincipalId string = ''

param location string = resourceGroup().location

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource storage 'Microsoft.Storage/storageAccounts@2023-01-01' existing = {
  name: deadLetterStorageAccountName
}

resource deadLetterBlobs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-01-01' = {
  name: '${storage.name}/default/${deadLetterContainer}'
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: '${registryName}-events'
  location: location
  identity: {type: 'SystemAssigned'}
  properties: {
    source: registry.id
    topicType: 'Microsoft.ContainerRegistry.Registries'
  }
}

// Event Grid needs to write dead letters to the container.
resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, topic.id, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe') // Storage Blob Data Contributor
    principalId: topic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Whoever redrives the dead letters reads them and tags each blob done: Storage Blob Data Owner, which
// the blob index tags need (Data Contributor cannot set them), on the container alone.
resource redriver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(redrivePrincipalId)) {
  name: guid(deadLetterBlobs.id, redrivePrincipalId, 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
  scope: deadLetterBlobs
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b') // Storage Blob Data Owner
    principalId: redrivePrincipalId
  }
}

resource subscription 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: topic
  name: 'to-nats'
  dependsOn: [deadLetterWriter, deadLetterBlobs]
  properties: {
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    destination: {
      endpointType: 'WebHook'
      properties: union({
        endpointUrl: '${bridgeUrl}/eventgrid'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }, authMode == 'entra' ? {
        azureActiveDirectoryTenantId: entraTenantId
        azureActiveDirectoryApplicationIdOrUri: entraAppIdOrUri
      } : {
        deliveryAttributeMappings: [
          {
            name: 'Authorization'
            type: 'Static'
            properties: {value: 'Bearer ${bridgeToken}', isSecret: true}
          }
        ]
      })
    }
    filter: {
      includedEventTypes: [
        'Microsoft.ContainerRegistry.ImagePushed'
        'Microsoft.ContainerRegistry.ImageDeleted'
        'Microsoft.ContainerRegistry.ChartPushed'
        'Microsoft.ContainerRegistry.ChartDeleted'
      ]
    }
    // The bridge answers 503 + Retry-After while NATS is away; keep retrying for a day.
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {type: 'SystemAssigned'}
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: deadLetterContainer
        }
      }
    }
  }
}

resource webhook 'Microsoft.ContainerRegistry/registries/webhooks@2023-07-01' = if (createNativeWebhook) {
  parent: registry
  name: 'tonats'
  location: location
  properties: {
    serviceUri: '${bridgeUrl}/webhooks/acr/${registryName}'
    customHeaders: {Authorization: 'Bearer ${bridgeToken}'}
    actions: ['push', 'delete', 'chart_push', 'chart_delete', 'quarantine']
    status: 'enabled'
    scope: ''
  }
}

output eventGridEndpoint string = '${bridgeUrl}/eventgrid'
output nativeWebhookEndpoint string = '${bridgeUrl}/webhooks/acr/${registryName}'
