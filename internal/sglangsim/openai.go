package sglangsim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// vocabulary the simulator "generates" from; tokens are words with a
// leading space, chosen by a hash of the request id and position.
var vocabulary = strings.Fields(`the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were her she there one all we their been has when who will more no if out so said what up its about into than them can only other new some time could these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three`)

func newRID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// countTokens approximates a tokenizer: about four characters per token.
func countTokens(text string) int {
	return max(1, (len(text)+3)/4)
}

func tokenText(rid string, i int) string {
	h := mix(uint64(i) ^ mix(uint64(len(rid))))
	for _, c := range rid {
		h = mix(h ^ uint64(c))
	}
	return " " + vocabulary[h%uint64(len(vocabulary))]
}

type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	MaxTokens     *int            `json:"max_tokens"`
	Temperature   *float64        `json:"temperature"`
	Stream        bool            `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	N *int `json:"n"`
}

type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	MaxTokens           *int `json:"max_tokens"`
	MaxCompletionTokens *int `json:"max_completion_tokens"`
	Stream              bool `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

func (s *Server) checkModel(w http.ResponseWriter, model string) bool {
	if model == "" || model == s.cfg.Args.ServedModelName || model == s.cfg.Args.ModelPath || model == "default" {
		return true
	}
	writeJSON(w, http.StatusNotFound, map[string]any{
		"object": "error", "message": fmt.Sprintf("The model `%s` does not exist.", model),
		"type": "model_not_found", "param": "model", "code": 404,
	})
	return false
}

// promptTokens counts tokens of an OpenAI prompt: a string, a list of
// strings (first used), or token ids.
func promptTokens(raw json.RawMessage) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, fmt.Errorf("prompt: field required")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return countTokens(s), nil
	}
	var ss []string
	if json.Unmarshal(raw, &ss) == nil && len(ss) > 0 {
		return countTokens(ss[0]), nil
	}
	var ids []int
	if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
		return len(ids), nil
	}
	return 0, fmt.Errorf("prompt: expected a string, a list of strings or a list of token ids")
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	var req completionRequest
	if err := json.Unmarshal(body, &req); err != nil {
		badRequest(w, fmt.Sprintf("JSON decode error: %v", err))
		return
	}
	if !s.checkModel(w, req.Model) {
		return
	}
	pt, err := promptTokens(req.Prompt)
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	maxTok := 16
	if req.MaxTokens != nil {
		maxTok = *req.MaxTokens
	}
	if maxTok < 0 {
		badRequest(w, "max_tokens must be at least 0")
		return
	}
	s.serveOpenAI(w, r, "text_completion", "cmpl-", pt, maxTok, req.Stream, req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
		func(text string, finish *string) map[string]any {
			return map[string]any{"index": 0, "text": text, "logprobs": nil, "finish_reason": finish, "matched_stop": nil}
		})
}

func (s *Server) handleChatCompletions(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		badRequest(w, fmt.Sprintf("JSON decode error: %v", err))
		return
	}
	if !s.checkModel(w, req.Model) {
		return
	}
	if len(req.Messages) == 0 {
		badRequest(w, "messages: field required")
		return
	}
	pt := 0
	for _, m := range req.Messages {
		pt += countTokens(string(m.Content)) + 4
	}
	maxTok := 128
	if req.MaxTokens != nil {
		maxTok = *req.MaxTokens
	}
	if req.MaxCompletionTokens != nil {
		maxTok = *req.MaxCompletionTokens
	}
	first := true
	s.serveOpenAI(w, r, "chat.completion", "chatcmpl-", pt, maxTok, req.Stream, req.StreamOptions != nil && req.StreamOptions.IncludeUsage,
		func(text string, finish *string) map[string]any {
			if req.Stream {
				delta := map[string]any{"content": text}
				if first {
					delta["role"] = "assistant"
					first = false
				}
				return map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish, "matched_stop": nil}
			}
			return map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": text, "reasoning_content": nil, "tool_calls": nil},
				"logprobs": nil, "finish_reason": finish, "matched_stop": nil}
		})
}

// serveOpenAI runs one request through the scheduler and answers in the
// OpenAI schema, streaming SSE chunks when asked.
func (s *Server) serveOpenAI(w http.ResponseWriter, r *http.Request, object, idPrefix string, pt, maxTok int, stream, includeUsage bool, choice func(string, *string) map[string]any) {
	if d := s.opts.TokenizeTime; d > 0 {
		if sleepCtx(r.Context(), d) != nil {
			return
		}
	}
	created := time.Now().Unix()
	if maxTok == 0 {
		maxTok = 1
	}
	req := s.submit(pt, maxTok, false)
	defer req.canceled.Store(true)
	id := idPrefix + req.rid
	usage := func(n int) map[string]any {
		return map[string]any{"prompt_tokens": pt, "total_tokens": pt + n, "completion_tokens": n, "prompt_tokens_details": nil}
	}
	length := "length"
	if stream {
		sse := newSSE(w)
		n := 0
		for {
			select {
			case <-r.Context().Done():
				return
			case <-s.ctx.Done():
				return
			case tok, ok := <-req.out:
				if !ok {
					if includeUsage {
						sse.data(map[string]any{"id": id, "object": object + ".chunk", "created": created, "model": s.cfg.Args.ServedModelName, "choices": []any{}, "usage": usage(n)})
					}
					sse.data("[DONE]")
					return
				}
				n++
				var fin *string
				if tok.finish {
					fin = &length
				}
				obj := object
				if object == "chat.completion" {
					obj += ".chunk"
				}
				sse.data(map[string]any{"id": id, "object": obj, "created": created, "model": s.cfg.Args.ServedModelName,
					"choices": []any{choice(tokenText(req.rid, tok.index), fin)}, "usage": nil})
			}
		}
	}
	var text strings.Builder
	n := 0
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.ctx.Done():
			return
		case tok, ok := <-req.out:
			if ok {
				text.WriteString(tokenText(req.rid, tok.index))
				n++
				continue
			}
			writeJSON(w, 200, map[string]any{"id": id, "object": object, "created": created, "model": s.cfg.Args.ServedModelName,
				"choices": []any{choice(text.String(), &length)}, "usage": usage(n), "metadata": map[string]any{"weight_version": "default"}})
			return
		}
	}
}

type generateRequest struct {
	Text           json.RawMessage `json:"text"`
	InputIDs       json.RawMessage `json:"input_ids"`
	SamplingParams struct {
		MaxNewTokens *int `json:"max_new_tokens"`
	} `json:"sampling_params"`
	Stream bool   `json:"stream"`
	RID    string `json:"rid"`
}

func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	var req generateRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"message": fmt.Sprintf("JSON decode error: %v", err)}})
		return
	}
	var pt int
	switch {
	case len(req.Text) > 0 && string(req.Text) != "null":
		n, err := promptTokens(req.Text)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"message": err.Error()}})
			return
		}
		pt = n
	case len(req.InputIDs) > 0 && string(req.InputIDs) != "null":
		var ids []int
		if err := json.Unmarshal(req.InputIDs, &ids); err != nil || len(ids) == 0 {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"message": "input_ids must be a non-empty list of integers"}})
			return
		}
		pt = len(ids)
	default:
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"message": "Either text, input_ids or input_embeds should be provided."}})
		return
	}
	maxNew := 128
	if req.SamplingParams.MaxNewTokens != nil {
		maxNew = max(1, *req.SamplingParams.MaxNewTokens)
	}
	start := time.Now()
	gr := s.submit(pt, maxNew, false)
	defer gr.canceled.Store(true)
	rid := gr.rid
	if req.RID != "" {
		rid = req.RID
	}
	var text strings.Builder
	var ids []int
	meta := func(n int, done bool) map[string]any {
		var fin any
		if done {
			fin = map[string]any{"type": "length", "length": n}
		}
		return map[string]any{"id": rid, "finish_reason": fin, "prompt_tokens": pt, "weight_version": "default",
			"completion_tokens": n, "cached_tokens": 0, "e2e_latency": time.Since(start).Seconds()}
	}
	var sse *sseWriter
	if req.Stream {
		sse = newSSE(w)
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.ctx.Done():
			return
		case tok, ok := <-gr.out:
			if !ok {
				if sse != nil {
					sse.data("[DONE]")
					return
				}
				writeJSON(w, 200, map[string]any{"text": text.String(), "output_ids": ids, "meta_info": meta(len(ids), true)})
				return
			}
			text.WriteString(tokenText(gr.rid, tok.index))
			ids = append(ids, int(mix(uint64(tok.index))%vocabSize))
			if sse != nil {
				sse.data(map[string]any{"text": text.String(), "output_ids": ids, "meta_info": meta(len(ids), tok.finish)})
			}
		}
	}
}
