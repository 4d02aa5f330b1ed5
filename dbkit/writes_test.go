package dbkit

import (
	"strings"
	"sync"
	"testing"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"
)

type copyPlain struct {
	Model
	Email string
	Note  *string
}

type copyHooked struct{ Model }

func (*copyHooked) BeforeCreate(*gorm.DB) error { return nil }

type copyDefault struct {
	Model
	Status string `gorm:"default:active"`
}

type copyOwner struct {
	Model
	Items []copyItem `gorm:"foreignKey:OwnerID"`
}

type copyItem struct {
	Model
	OwnerID string
}

type copySerialized struct {
	Model
	Tags []string `gorm:"serializer:json"`
}

func TestCopyPlan(t *testing.T) {
	cases := []struct {
		model  any
		reason string // "" when COPY applies
		cols   string
	}{
		{&copyPlain{}, "", "id,created_at,updated_at,email,note"},
		{&copyHooked{}, "hooks", ""},
		{&copyDefault{}, "database default", ""},
		{&copyOwner{}, "associations", ""},
		{&copySerialized{}, "serializer", ""},
	}
	for _, c := range cases {
		s, err := schema.Parse(c.model, &sync.Map{}, schema.NamingStrategy{})
		if err != nil {
			t.Fatal(err)
		}
		p := newCopyPlan(s)
		if c.reason == "" && (p.reason != "" || strings.Join(p.columns, ",") != c.cols) {
			t.Errorf("%T: plan %+v, want COPY of %s", c.model, p, c.cols)
		}
		if c.reason != "" && !strings.Contains(p.reason, c.reason) {
			t.Errorf("%T: reason %q, want one about %s", c.model, p.reason, c.reason)
		}
	}
}
