package bridge

// routes lists the whole HTTP API (DESIGN.md §2). The mux answers a wrong method with 405 and Allow.
func (s *Server) routes() {
	s.mux.Handle("POST /eventgrid", s.limitInflight(s.handleEventGrid()))
	s.mux.Handle("OPTIONS /eventgrid", s.handleValidationOptions())
	s.mux.Handle("POST /webhooks/acr/{registry}", s.limitInflight(s.handleWebhook()))
	s.mux.Handle("POST /webhooks/acr", s.limitInflight(s.handleWebhook()))
	s.mux.Handle("GET /healthz", s.handleHealthz())
	s.mux.Handle("GET /readyz", s.handleReadyz())
}
