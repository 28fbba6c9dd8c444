package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestPrivateAuthority(t *testing.T) {
	for host, private := range map[string]bool{
		"":                                   false,
		"https://login.microsoftonline.com/": false,
		"https://LOGIN.microsoftonline.com":  false,
		"https://login.microsoftonline.us/":  false,
		"https://login.chinacloudapi.cn/":    false,
		"https://login.azurestack.local/":    true,
		"https://127.0.0.1:8443":             true,
	} {
		assert.Equal(t, private, privateAuthority(host), host)
	}
}
