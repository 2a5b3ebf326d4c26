"""Small shared building blocks that every layer may import (no project imports of their own)."""
