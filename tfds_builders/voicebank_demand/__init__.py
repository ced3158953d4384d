"""voicebank_demand: the VoiceBank+DEMAND speech-enhancement benchmark (manual download)."""
