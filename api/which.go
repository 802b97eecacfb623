package api

// PathWhich is GET /api/v1/which?service=S&client=IP:PORT.
const PathWhich = "/api/v1/which"

// Which sources: where the data plane takes a flow's backend from now.
const (
	WhichFlowTable = "flow_table" // the flow has a valid connection-table entry
	WhichMaglev    = "maglev"     // no (valid) entry: the service's Maglev table picks
)

// Which answers GET /api/v1/which: the backend a client's flow gets now.
type Which struct {
	Service string `json:"service"`
	Client  string `json:"client"`
	Backend string `json:"backend"`
	Source  string `json:"source"` // WhichFlowTable or WhichMaglev
	// MaglevBackend is what the Maglev table picks for this address and
	// port: where a new TCP connection (a SYN, which never follows the
	// flow table) goes, and a UDP flow once its entry idles out. An entry
	// outlives its connection (the data plane does not see the close), so
	// with source flow_table it may differ from Backend. Empty when the
	// table is empty (every backend drained).
	MaglevBackend string `json:"maglev_backend,omitempty"`
}
