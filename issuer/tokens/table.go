package tokens

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"

	extv1 "portcullis.dev/portcullis/issuer/apis/ext/v1"
)

// humanTTL prints a ttl in its largest exact unit ("90d", "2h", "90m"); a
// ttl that is no whole number of seconds is printed as kubectl prints ages.
func humanTTL(d time.Duration) string {
	for _, u := range []struct {
		size time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if d >= u.size && d%u.size == 0 {
			return fmt.Sprintf("%d%s", d/u.size, u.name)
		}
	}
	return duration.HumanDuration(d)
}

// ConvertToTable implements rest.TableConvertor: NAME KIND TTL AGE, and with
// -o wide NAME USER KIND TTL AGE DESCRIPTION, as Rancher prints them.
func (r *REST) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{ColumnDefinitions: []metav1.TableColumnDefinition{
		{Name: "Name", Type: "string", Format: "name", Description: "Name of the token"},
		{Name: "User", Type: "string", Priority: 1, Description: "The owner"},
		{Name: "Kind", Type: "string", Description: "session for a login token, empty for a derived one"},
		{Name: "TTL", Type: "string", Description: "Lifetime"},
		{Name: "Age", Type: "string", Description: "Time since creation"},
		{Name: "Description", Type: "string", Priority: 1, Description: "What the token is for"},
	}}
	var items []extv1.Token
	switch o := obj.(type) {
	case *extv1.Token:
		items = []extv1.Token{*o}
	case *extv1.TokenList:
		items = o.Items
		table.ResourceVersion = o.ResourceVersion
	default:
		return nil, fmt.Errorf("tokens: cannot make a table of %T", obj)
	}
	now := r.clock.Now()
	for i := range items {
		t := &items[i]
		age := "<unknown>"
		if !t.CreationTimestamp.IsZero() {
			age = duration.HumanDuration(now.Sub(t.CreationTimestamp.Time))
		}
		table.Rows = append(table.Rows, metav1.TableRow{
			Cells:  []any{t.Name, t.Spec.UserID, t.Spec.Kind, humanTTL(time.Duration(t.Spec.TTL) * time.Millisecond), age, t.Spec.Description},
			Object: runtime.RawExtension{Object: t},
		})
	}
	return table, nil
}
