package bridge

// routes lists the whole HTTP API (docs/endpoints.md). The mux answers a wrong method with 405 and Allow.
// Deliveries are authenticated before their body is read, then count against the in-flight cap.
func (s *Server) routes() {
	s.mux.Handle("POST /eventgrid", s.authenticate(s.limitInflight(s.handleEventGrid())))
	s.mux.Handle("OPTIONS /eventgrid", s.handleValidationOptions())
	s.mux.Handle("POST /webhooks/acr/{registry}", s.authenticate(s.limitInflight(s.handleWebhook())))
	s.mux.Handle("POST /webhooks/acr", s.authenticate(s.limitInflight(s.handleWebhook())))
	s.mux.Handle("GET /healthz", s.handleHealthz())
	s.mux.Handle("GET /readyz", s.handleReadyz())
	s.mux.Handle("GET /readyz/pull", s.handleReadyzPull())
	if s.opts.MetricsHandler != nil {
		s.mux.Handle("GET /metrics", s.opts.MetricsHandler)
	}
}
