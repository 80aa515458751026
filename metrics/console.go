package metrics

import "github.com/prometheus/client_golang/prometheus"

// Console is what the VNC console proxy counts.
type Console struct {
	// Open is the number of live sessions.
	Open prometheus.Gauge
	// Opened counts sessions opened.
	Opened prometheus.Counter
	// Ended counts sessions ended, by reason.
	Ended *prometheus.CounterVec
	// Refused counts connections refused before a session opened, by reason.
	Refused *prometheus.CounterVec
	// Relayed counts the bytes relayed, by direction (to_client, to_vm).
	Relayed *prometheus.CounterVec
}

// NewConsole registers the console proxy's metrics on reg.
func NewConsole(reg prometheus.Registerer) *Console {
	c := &Console{
		Open:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "portcullis_vnc_proxy_sessions_open", Help: "Live VNC console sessions."}),
		Opened:  prometheus.NewCounter(prometheus.CounterOpts{Name: "portcullis_vnc_proxy_sessions_opened_total", Help: "VNC console sessions opened."}),
		Ended:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_vnc_proxy_sessions_ended_total", Help: "VNC console sessions ended, by reason."}, []string{"reason"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_vnc_proxy_connections_refused_total", Help: "Console connections refused before a session opened, by reason."}, []string{"reason"}),
		Relayed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_vnc_proxy_relayed_bytes_total", Help: "Bytes relayed between consoles and VMs, by direction."}, []string{"direction"}),
	}
	reg.MustRegister(c.Open, c.Opened, c.Ended, c.Refused, c.Relayed)
	return c
}
