// Lets the bridge pull a registry's events, with no public endpoint of its own (BRIDGE_NAMESPACE_*):
//   an Event Grid namespace with a topic (CloudEvents 1.0) and a queue subscription the bridge receives
//   from; the registry's system topic routes its events to the namespace topic with its managed identity,
//   which holds the EventGrid Data Sender role on the namespace.
// The bridge authenticates with the namespace's shared access key (output below, BRIDGE_NAMESPACE_KEY) or,
// given bridgePrincipalId, with Microsoft Entra ID as that identity, which gets EventGrid Data Receiver.
//
//   az deployment group create -g <rg> -f deployments/azure/namespace.bicep \
//     -p registryName=myregistry namespaceName=myregistry-events

@description('Name of the existing container registry.')
param registryName string

@description('Name of the Event Grid namespace to create (3-50 letters, digits and hyphens).')
param namespaceName string

@description('Namespace topic the registry\'s events go to (BRIDGE_NAMESPACE_TOPIC).')
param topicName string = 'acr-events'

@description('Queue subscription the bridge receives from (BRIDGE_NAMESPACE_SUBSCRIPTION).')
param subscriptionName string = 'bridge'

@description('Object id of the identity the bridge runs as, for Entra ID instead of the shared key; empty grants none.')
param bridgePrincipalId string = ''

@description('How long a received event stays locked to the bridge before it is delivered again (60-300 s).')
@minValue(60)
@maxValue(300)
param lockDurationInSeconds int = 60

@description('Deliveries of one event before the namespace gives up on it.')
@minValue(1)
@maxValue(10)
param maxDeliveryCount int = 10

@description('Storage account of the dead-letter container, for the events the namespace gives up on (after maxDeliveryCount, their time to live, or a reject); empty sets none.')
param deadLetterStorageAccountName string = ''

@description('Dead-letter container (created if absent).')
param deadLetterContainer string = 'acr-events-deadletter'

@description('Object id of the identity that runs `bridge redrive blobs`, given Storage Blob Data Owner on the dead-letter container; empty grants none.')
param redrivePrincipalId string = ''

param location string = resourceGroup().location

var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'
var eventGridDataReceiver = '78cbd9e7-9798-4e2e-9b5a-547d9ebb31fb'

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource namespace 'Microsoft.EventGrid/namespaces@2025-02-15' = {
  name: namespaceName
  location: location
  sku: {name: 'Standard', capacity: 1}
  // The namespace writes its dead letters with its own identity.
  identity: {type: 'SystemAssigned'}
  properties: {}
}

var deadLettering = !empty(deadLetterStorageAccountName)

resource storage 'Microsoft.Storage/storageAccounts@2023-01-01' existing = if (deadLettering) {
  name: deadLettering ? deadLetterStorageAccountName : 'unused'
}

resource deadLetterBlobs 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-01-01' = if (deadLettering) {
  name: '${deadLetterStorageAccountName}/default/${deadLetterContainer}'
}

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deadLettering) {
  name: guid(storage.id, namespace.id, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe') // Storage Blob Data Contributor
    principalId: namespace.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource redriver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (deadLettering && !empty(redrivePrincipalId)) {
  name: guid(deadLetterBlobs.id, redrivePrincipalId, 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
  scope: deadLetterBlobs
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b') // Storage Blob Data Owner
    principalId: redrivePrincipalId
  }
}

resource topic 'Microsoft.EventGrid/namespaces/topics@2025-02-15' = {
  parent: namespace
  name: topicName
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    publisherType: 'Custom'
    eventRetentionInDays: 7
  }
}

resource queue 'Microsoft.EventGrid/namespaces/topics/eventSubscriptions@2025-02-15' = {
  parent: topic
  name: subscriptionName
  dependsOn: [deadLetterWriter, deadLetterBlobs]
  properties: {
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    deliveryConfiguration: {
      deliveryMode: 'Queue'
      queue: union({
        receiveLockDurationInSeconds: lockDurationInSeconds
        maxDeliveryCount: maxDeliveryCount
        eventTimeToLive: 'P7D'
      }, deadLettering ? {
        // What the namespace gives up on, as blobs: `bridge redrive blobs` brings it back.
        deadLetterDestinationWithResourceIdentity: {
          identity: {type: 'SystemAssigned'}
          deadLetterDestination: {
            endpointType: 'StorageBlob'
            properties: {
              resourceId: storage.id
              blobContainerName: deadLetterContainer
            }
          }
        }
      } : {})
    }
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: '${registryName}-events'
  location: location
  identity: {type: 'SystemAssigned'}
  properties: {
    source: registry.id
    topicType: 'Microsoft.ContainerRegistry.Registries'
  }
}

// The system topic sends to the namespace topic as itself.
resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, systemTopic.id, eventGridDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender) // EventGrid Data Sender
    principalId: systemTopic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource route 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  name: 'to-namespace'
  dependsOn: [sender]
  properties: {
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    deliveryWithResourceIdentity: {
      identity: {type: 'SystemAssigned'}
      destination: {
        endpointType: 'NamespaceTopic'
        properties: {resourceId: topic.id}
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.ContainerRegistry.ImagePushed'
        'Microsoft.ContainerRegistry.ImageDeleted'
        'Microsoft.ContainerRegistry.ChartPushed'
        'Microsoft.ContainerRegistry.ChartDeleted'
      ]
    }
  }
}

resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(bridgePrincipalId)) {
  name: guid(queue.id, bridgePrincipalId, eventGridDataReceiver)
  scope: queue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataReceiver) // EventGrid Data Receiver
    principalId: bridgePrincipalId
  }
}

output endpoint string = 'https://${namespace.properties.topicsConfiguration.hostname}' // BRIDGE_NAMESPACE_ENDPOINT
output topic string = topicName // BRIDGE_NAMESPACE_TOPIC
output subscription string = subscriptionName // BRIDGE_NAMESPACE_SUBSCRIPTION
