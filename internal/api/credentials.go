package api

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// TokenFile is the admin credential's file name inside weftd's data dir.
const TokenFile = "admin.token"

// DefaultDataDir is where weftd keeps state unless told otherwise:
// $XDG_DATA_HOME/weft, else ~/.local/share/weft. weftctl uses the same
// default to find the admin credential.
func DefaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "weft")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "weft")
	}
	return ".weft"
}

// ReadToken reads the admin credential from a data dir's token file.
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return "", fmt.Errorf("no admin token at %s: start weftd with the same --data-dir first, or pass --token-file", path)
		}
		return "", fmt.Errorf("read admin token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
