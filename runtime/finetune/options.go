package finetune

// Options are the settings of a run, named as TRL's SFTConfig and PEFT's
// LoraConfig name them (max_seq_length → MaxSeqLength). cmd/finetune fills
// them from its flags, which validate them; they are recorded in the output
// directory as training_args.json.
type Options struct {
	Model string // the base model as given; the adapter's base_model_name_or_path

	Dataset          string // .jsonl/.json/.parquet file or directory, or Hub dataset id
	DatasetSplit     string
	DatasetTextField string // column of plain-text rows
	SystemPrompt     string // system message of Dolly rows; "" = none
	OutputDir        string

	// LoRA (PEFT LoraConfig).
	R             int
	LoraAlpha     float64
	LoraDropout   float64
	TargetModules []string // projection names, e.g. "q_proj"
	UseRSLoRA     bool

	// Training (SFTConfig / TrainingArguments).
	MaxSeqLength              int
	PerDeviceTrainBatchSize   int
	GradientAccumulationSteps int
	WarmupSteps               int
	MaxSteps                  int     // -1 = NumTrainEpochs decides
	NumTrainEpochs            float64 // used when MaxSteps is -1
	LearningRate              float64 // peak of the linear schedule
	WeightDecay               float64
	Optim                     string // "adamw_8bit" or "adamw_torch"
	MaxGradNorm               float64
	Seed                      uint64
	LoggingSteps              int
	SaveSteps                 int    // 0 = no checkpoints
	ResumeFromCheckpoint      string // "" = start fresh; "true" = the latest checkpoint in OutputDir; else a checkpoint directory
	GradientCheckpointing     bool

	// Masking (unsloth train_on_responses_only).
	TrainOnResponsesOnly bool
	InstructionPart      string // "" = the Llama 3 user header
	ResponsePart         string // "" = the Llama 3 assistant header
	ShowMasking          int    // print this sample's masking before training; -1 = none
}
