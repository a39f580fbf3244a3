"""EngravingGNN: quantized piano scores to engraved MusicXML/MEI (paper: ../shared/seeds/004)."""
