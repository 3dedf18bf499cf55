package discovery

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/network"
)

// netLister answers NetworkList only; ResolveNetwork needs nothing else.
type netLister struct {
	DockerAPI
	nets []network.Summary
}

func (f netLister) NetworkList(context.Context, network.ListOptions) ([]network.Summary, error) {
	return f.nets, nil
}

func TestResolveNetwork(t *testing.T) {
	compose := func(name, short string) network.Summary {
		return network.Summary{Name: name, Labels: map[string]string{"com.docker.compose.network": short}}
	}
	api := netLister{nets: []network.Summary{
		{Name: "bridge"},
		compose("shop_app_net", "app_net"),
		compose("blog_app_net", "app_net"),
		compose("shop_db", "db"),
	}}
	tests := []struct {
		desc, name string
		prefer     []string
		want       string
		wantErr    string
	}{
		{"exact name", "bridge", nil, "bridge", ""},
		{"full compose name", "blog_app_net", nil, "blog_app_net", ""},
		{"short compose name", "db", nil, "shop_db", ""},
		{"ambiguous lists the candidates", "app_net", nil, "", "blog_app_net, shop_app_net"},
		{"Shoal's own network settles it", "app_net", []string{"shop_app_net", "bridge"}, "shop_app_net", ""},
		{"missing", "nope", nil, "", "no network named"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := ResolveNetwork(context.Background(), api, tc.name, tc.prefer)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(tc.desc, "ambiguous") && !errors.Is(err, ErrAmbiguousNetwork) {
					t.Fatalf("err = %v, want ErrAmbiguousNetwork", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
