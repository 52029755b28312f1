"""Data augmentation for distillation: TinyBERT-style word replacement by embedding neighbours, a masked-LM head
trained on an encoder that ships without one, Markov-chain refill of masked tokens (Learning to Augment's
generator), and the reinforced keep/drop selector of generated examples. Plain torch; the plugins in
alembert.plugins.augment and alembert.plugins.l2a put them on the training loop."""
