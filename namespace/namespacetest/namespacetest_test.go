package namespacetest_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/messaging"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/eventgrid/aznamespaces"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/natsbridge/acr-nats-bridge/namespace/namespacetest"
)

func clientOptions(ns *namespacetest.Namespace) azcore.ClientOptions {
	return azcore.ClientOptions{Transport: ns.Client, Retry: policy.RetryOptions{MaxRetries: -1}}
}

func receiver(t *testing.T, ns *namespacetest.Namespace, key, sub string) *aznamespaces.ReceiverClient {
	t.Helper()
	c, err := aznamespaces.NewReceiverClientWithSharedKeyCredential(ns.URL, "acr-events", sub, azcore.NewKeyCredential(key),
		&aznamespaces.ReceiverClientOptions{ClientOptions: clientOptions(ns)})
	require.NoError(t, err)
	return c
}

// send publishes events with the SDK's sender client, as a namespace topic's publisher does.
func send(t *testing.T, ns *namespacetest.Namespace, ids ...string) {
	t.Helper()
	s, err := aznamespaces.NewSenderClientWithSharedKeyCredential(ns.URL, "acr-events", azcore.NewKeyCredential(ns.Key),
		&aznamespaces.SenderClientOptions{ClientOptions: clientOptions(ns)})
	require.NoError(t, err)
	var events []*messaging.CloudEvent
	for _, id := range ids {
		ev, err := messaging.NewCloudEvent("/test", "Test.Event", map[string]string{"id": id}, nil)
		require.NoError(t, err)
		ev.ID = id
		events = append(events, &ev)
	}
	_, err = s.SendEvents(context.Background(), events, nil)
	require.NoError(t, err)
}

func lockTokens(res aznamespaces.ReceiveEventsResponse) []string {
	var toks []string
	for _, d := range res.Details {
		toks = append(toks, *d.BrokerProperties.LockToken)
	}
	return toks
}

// The stand-in as the SDK's clients see it: receive under locks, settle by lock token, expired locks
// redelivered with a higher delivery count, rejected events dead-lettered.
func TestNamespaceWithTheSDK(t *testing.T) {
	ns := namespacetest.New(t, namespacetest.Options{LockDuration: 300 * time.Millisecond, MaxDeliveryCount: 3, MaxWaitScale: 20})
	ctx := context.Background()
	rc := receiver(t, ns, ns.Key, "bridge")
	send(t, ns, "e1", "e2", "e3", "e4")

	res, err := rc.ReceiveEvents(ctx, &aznamespaces.ReceiveEventsOptions{MaxEvents: to.Ptr[int32](10), MaxWaitTime: to.Ptr[int32](10)})
	require.NoError(t, err)
	require.Len(t, res.Details, 4)
	assert.Equal(t, "e1", res.Details[0].Event.ID)
	assert.Equal(t, int32(1), *res.Details[0].BrokerProperties.DeliveryCount)
	toks := lockTokens(res)

	ack, err := rc.AcknowledgeEvents(ctx, []string{toks[0]}, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{toks[0]}, ack.SucceededLockTokens)
	rej, err := rc.RejectEvents(ctx, []string{toks[1]}, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{toks[1]}, rej.SucceededLockTokens)
	rel, err := rc.ReleaseEvents(ctx, []string{toks[2]}, &aznamespaces.ReleaseEventsOptions{ReleaseDelayInSeconds: to.Ptr(aznamespaces.ReleaseDelayNoDelay)})
	require.NoError(t, err)
	assert.Equal(t, []string{toks[2]}, rel.SucceededLockTokens)
	renew, err := rc.RenewEventLocks(ctx, []string{toks[3]}, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{toks[3]}, renew.SucceededLockTokens)

	// A settled token fails on its own, the rest of the request succeeds.
	ack, err = rc.AcknowledgeEvents(ctx, []string{toks[0], toks[3]}, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{toks[3]}, ack.SucceededLockTokens)
	require.Len(t, ack.FailedLockTokens, 1)
	assert.Equal(t, toks[0], *ack.FailedLockTokens[0].LockToken)
	assert.Equal(t, "BadToken", *ack.FailedLockTokens[0].Error.Code)

	// The released event comes back with a higher delivery count; left unsettled, its lock expires and
	// it comes back again, until the maximum delivery count dead-letters it.
	for count := int32(2); count <= 3; count++ {
		res, err = rc.ReceiveEvents(ctx, &aznamespaces.ReceiveEventsOptions{MaxEvents: to.Ptr[int32](10), MaxWaitTime: to.Ptr[int32](10)})
		require.NoError(t, err)
		require.Len(t, res.Details, 1)
		assert.Equal(t, "e3", res.Details[0].Event.ID)
		assert.Equal(t, count, *res.Details[0].BrokerProperties.DeliveryCount)
	}
	time.Sleep(400 * time.Millisecond)
	res, err = rc.ReceiveEvents(ctx, &aznamespaces.ReceiveEventsOptions{MaxEvents: to.Ptr[int32](10), MaxWaitTime: to.Ptr[int32](10)})
	require.NoError(t, err)
	assert.Empty(t, res.Details, "an empty receive after the wait")
	assert.Equal(t, []string{"e1", "e4"}, ns.Acknowledged())
	dead := ns.DeadLettered()
	require.Len(t, dead, 2)
	assert.Equal(t, "Rejected", dead[0].Reason)
	assert.Equal(t, "MaxDeliveryCountExceeded", dead[1].Reason)
	assert.Zero(t, ns.Outstanding())
}

// Refusals come as the service's errors: a wrong key is 401, a missing subscription 404.
func TestNamespaceRefusals(t *testing.T) {
	ns := namespacetest.New(t, namespacetest.Options{MaxWaitScale: 20})
	ctx := context.Background()
	var re *azcore.ResponseError

	_, err := receiver(t, ns, "wrong-key", "bridge").ReceiveEvents(ctx, nil)
	require.True(t, errors.As(err, &re), "%v", err)
	assert.Equal(t, http.StatusUnauthorized, re.StatusCode)
	assert.Equal(t, "Unauthorized", re.ErrorCode)

	_, err = receiver(t, ns, ns.Key, "nobody").ReceiveEvents(ctx, nil)
	require.True(t, errors.As(err, &re), "%v", err)
	assert.Equal(t, http.StatusNotFound, re.StatusCode)
	assert.Equal(t, 1, ns.Requests("unauthorized"))
	assert.Equal(t, 1, ns.Requests("notfound"))
}
