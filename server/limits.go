package server

import (
	"fmt"
	"log/slog"

	"github.com/ferryrtc/ferry/auth"
	"github.com/ferryrtc/ferry/config"
	"github.com/ferryrtc/ferry/edge"
	"github.com/ferryrtc/ferry/relay"
)

// protections are the quota and abuse-limit parts built from quota.* and
// limits.*.
type protections struct {
	quota *relay.Quota       // allocation counts and bandwidth (PortAllocator, QuotaHandler)
	gate  *relay.RequestGate // permissions, channels, LIFETIME (edge Gate)
	guard *edge.Guard        // per-IP limits and nonce rules (edge Guard)
}

func newProtections(cfg config.Config, authn *auth.Authenticator, log *slog.Logger) (protections, error) {
	q, err := relay.NewQuota(relay.QuotaOptions{
		UserAllocations:     cfg.Quota.UserAllocations,
		TotalAllocations:    cfg.Quota.TotalAllocations,
		AllocationBandwidth: int64(cfg.Quota.AllocationBandwidth),
		UserBandwidth:       int64(cfg.Quota.UserBandwidth),
		Log:                 log,
	})
	if err != nil {
		return protections{}, fmt.Errorf("quota: %w", err)
	}
	g, err := relay.NewRequestGate(relay.GateOptions{
		Permissions: cfg.Quota.Permissions,
		Channels:    cfg.Quota.Channels,
		MaxLifetime: cfg.Quota.MaxLifetime,
		Key:         authn.Key,
		Log:         log,
	})
	if err != nil {
		return protections{}, fmt.Errorf("quota: %w", err)
	}
	guard, err := edge.NewGuard(edge.GuardOptions{
		AllocateRate:     cfg.Limits.AllocateRate,
		AllocateBurst:    cfg.Limits.AllocateBurst,
		AuthFailureRate:  cfg.Limits.AuthFailureRate,
		AuthFailureBurst: cfg.Limits.AuthFailureBurst,
		TrackedIPs:       cfg.Limits.TrackedIPs,
		NonceLifetime:    cfg.Limits.NonceLifetime,
		BindNonces:       cfg.Limits.BindNonces,
	})
	if err != nil {
		return protections{}, fmt.Errorf("limits: %w", err)
	}
	return protections{quota: q, gate: g, guard: guard}, nil
}

// quotaRefused is the QuotaHandler's onRefuse for obs.
func quotaRefused(obs Observer) func() {
	if obs == nil {
		return nil
	}
	return func() { obs.AllocationRefused(RefusedQuota) }
}

// QuotaStats returns the allocation quota counters.
func (s *Server) QuotaStats() relay.QuotaStats { return s.prot.quota.Stats() }

// GateStats returns the permission, channel and lifetime quota counters.
func (s *Server) GateStats() relay.GateStats { return s.prot.gate.Stats() }
