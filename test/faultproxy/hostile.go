package faultproxy

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// addNulls rewrites a JSON answer with a null added at the start and the
// end of every array in it. A body that is not JSON is left alone.
func addNulls(resp *http.Response) error {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // indexes and coordinates keep their exact digits
	var v any
	if dec.Decode(&v) == nil {
		if edited, err := json.Marshal(withNulls(v)); err == nil {
			body = edited
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.TransferEncoding = nil
	resp.Header.Del("Content-Encoding")
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	return nil
}

// withNulls returns v with a null at both ends of every array, at any depth.
func withNulls(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, 0, len(x)+2)
		out = append(out, nil)
		for _, e := range x {
			out = append(out, withNulls(e))
		}
		return append(out, nil)
	case map[string]any:
		for k, e := range x {
			x[k] = withNulls(e)
		}
	}
	return v
}

// HugeBodySize is how large HugeBody's answer is once decompressed: a
// 300 MB tag, as in the report it reproduces.
const HugeBodySize = 300 << 20

var (
	bombOnce sync.Once
	bomb     []byte
)

// writeHugeBody sends the gzip bomb, compressed once per test binary.
func writeHugeBody(w http.ResponseWriter) {
	bombOnce.Do(func() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		io.WriteString(zw, `[{"Node":"huge","Address":"10.0.0.1","Meta":{"tag":"`)
		chunk := bytes.Repeat([]byte("A"), 1<<20)
		for range HugeBodySize >> 20 {
			zw.Write(chunk)
		}
		io.WriteString(zw, `"}}]`)
		zw.Close()
		bomb = buf.Bytes()
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Encoding", "gzip")
	w.Header().Set("X-Consul-Index", "999999")
	w.Header().Set("Content-Length", strconv.Itoa(len(bomb)))
	w.Write(bomb)
}
