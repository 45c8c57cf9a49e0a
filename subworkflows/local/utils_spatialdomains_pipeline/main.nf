/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    Pipeline initialisation and completion, without plugins
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    --help and parameter checks read nextflow_schema.json (JsonSlurper); the sample sheet is
    validated by the first task (SPATIALDOMAINS_VALIDATE, the Python validator), and every
    slice channel is built from its normalised CSV.
----------------------------------------------------------------------------------------
*/

include { SPATIALDOMAINS_SIMULATE } from '../../../modules/local/spatialdomains/simulate'
include { SPATIALDOMAINS_VALIDATE } from '../../../modules/local/spatialdomains/validate'

/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    PIPELINE_INITIALISATION: help, parameter checks, sample sheet -> slice channel
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
*/

workflow PIPELINE_INITIALISATION {

    take:
    run_params      // value: map, the run's params (for --help and the unknown-parameter check)
    schema_file     // value: path, nextflow_schema.json
    input           // value: string, --input sample sheet (null with --simulate)
    simulate        // value: boolean, generate synthetic slices first
    sim_n_groups    // value: integer, groups the synthetic slices are split into
    n_domains       // value: integer or null, K for rows that leave n_domains empty
    outdir          // value: string, --outdir
    report_suffix   // value: string or null, suffix of the pipeline_info files

    main:
    ch_versions = channel.empty()

    schema = new groovy.json.JsonSlurper().parseText(schema_file.text)
    if (run_params.help) {
        log.info(helpMessage(schema, run_params.show_hidden))
        exit(0)
    }
    if (run_params.version) {
        log.info("${pipelineName()} ${workflow.manifest.version}")
        exit(0)
    }
    if (run_params.validate_params) {
        validateParameters(run_params, schema)
    }
    if (!input && !simulate) {
        error("Missing --input: give a sample sheet CSV (columns sample, group, data, image, platform, truth, n_domains; see docs/usage.md), or run -profile test. `nextflow run . --help` lists every parameter.")
    }
    if (input && simulate) {
        log.warn("--simulate is set: the synthetic sample sheet replaces --input ${input}")
    }
    dumpParametersToJSON(run_params, outdir, report_suffix)

    //
    // The sample sheet: the user's, or one written by `spatialdomains simulate`
    //
    ch_sheet = channel.empty()
    ch_gmt   = channel.value(file("${projectDir}/assets/NO_FILE"))
    if (simulate) {
        SPATIALDOMAINS_SIMULATE([id: 'synthetic'], sim_n_groups)
        ch_sheet    = SPATIALDOMAINS_SIMULATE.out.samplesheet.map { sheet -> [sheet, ''] }
        ch_gmt      = SPATIALDOMAINS_SIMULATE.out.gmt.first()
        ch_versions = ch_versions.mix(SPATIALDOMAINS_SIMULATE.out.versions)
    } else {
        // relative paths in a local sheet resolve against its own folder (remote sheets: as staged)
        ch_sheet = channel.fromPath(input, checkIfExists: true)
            .map { sheet -> [sheet, sheet.toUri().scheme == 'file' ? sheet.parent.toString() : ''] }
    }

    //
    // The first task: every row problem at once (row, column, reason) on stderr, exit 1
    //
    SPATIALDOMAINS_VALIDATE(ch_sheet)
    ch_versions = ch_versions.mix(SPATIALDOMAINS_VALIDATE.out.versions)

    // All rows are read (and their files checked) before the first slice is emitted
    ch_rows = SPATIALDOMAINS_VALIDATE.out.csv
        .splitCsv(header: true)
        .toList()
        .map { rows -> checkRowFiles(rows) }

    ch_slices = ch_rows
        .flatMap { rows -> rows.collect { row -> rowToSlice(row, n_domains) } }

    // Slices per group: lets each group's fan-in start as soon as its own slices are done
    ch_group_sizes = ch_rows
        .map { rows -> rows.countBy { row -> row.group } }

    emit:
    slices      = ch_slices       // channel: [ meta, data, image | [], truth_file | [], truth_column ]
    group_sizes = ch_group_sizes  // channel: value map [ group: number of slices ]
    gmt         = ch_gmt          // channel: value path, the simulated gene sets, or assets/NO_FILE
    versions    = ch_versions     // channel: [ versions.yml ]
}

/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    FUNCTIONS
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
*/

//
// One validated sample-sheet row -> [ meta, data, image, truth_file, truth_column ]
//
def rowToSlice(row, default_n_domains) {
    def meta = [
        id        : row.sample,
        sample    : row.sample,
        group     : row.group,
        platform  : row.platform ?: 'other',
        has_image : row.has_image == 'true',
        has_truth : row.has_truth == 'true',
        n_domains : row.n_domains ? row.n_domains.toInteger() : default_n_domains,
    ]
    def image        = row.image ? file(row.image) : []
    def truth_is_file = row.truth && isPathLike(row.truth)
    def truth_file   = truth_is_file ? file(row.truth) : []
    def truth_column = truth_is_file ? '' : (row.truth ?: '')
    return [meta, file(row.data), image, truth_file, truth_column]
}

def isPathLike(value) {
    return value.startsWith('/') || value.contains('://')
}

//
// The validator checks files too, except inside containers (where the user's folders may not be
// mounted): list every missing local file at once, before any slice task starts.
//
def checkRowFiles(rows) {
    def missing = []
    rows.eachWithIndex { row, i ->
        ['data', 'image', 'truth'].each { column ->
            def value = row[column]
            if (value && isPathLike(value) && !value.contains('://') && !file(value).exists()) {
                missing << "  - row ${i + 1}, column '${column}': file not found: ${value}"
            }
        }
    }
    if (missing) {
        error("invalid sample sheet (${missing.size()} problem(s)):\n${missing.join('\n')}")
    }
    return rows
}

//
// --help: the parameters of nextflow_schema.json, grouped as in the schema
//
def helpMessage(schema, show_hidden) {
    def lines = []
    lines << "${pipelineName()} ${workflow.manifest.version}: ${workflow.manifest.description}"
    lines << ''
    lines << 'Typical commands:'
    lines << '  nextflow run . -profile test --outdir results                       # bundled demo, CPU'
    lines << '  nextflow run . -profile singularity,gpu --input samplesheet.csv --outdir results'
    lines << ''
    lines << 'Profiles: test, test_full, docker, podman, singularity, apptainer, gpu, slurm, awsbatch, google_batch, k8s'
    schema['$defs'].each { key, group ->
        def props = group['properties'].findAll { name, prop -> show_hidden || !prop.hidden }
        if (!props) {
            return
        }
        lines << ''
        lines << "${group.title}:"
        props.each { name, prop ->
            def kind = prop.enum ? prop.enum.join('|') : prop.type
            def dflt = prop.containsKey('default') ? ", default: ${prop['default']}" : ''
            lines << "  --${name.padRight(20)} ${prop.description} [${kind}${dflt}]"
        }
    }
    lines << ''
    lines << (show_hidden ? '' : 'Add --show_hidden to list hidden parameters. ') + 'Details: docs/usage.md, docs/parameters.md'
    return lines.join('\n')
}

//
// Parameter checks against the schema: type, enum, pattern, bounds (errors, all at once);
// parameters the schema does not know (a warning, with the closest known name)
//
def validateParameters(run_params, schema) {
    def props = [:]
    schema['$defs'].each { key, group -> props.putAll(group['properties']) }
    if (schema['properties']) {
        props.putAll(schema['properties'])
    }

    def errors = []
    props.each { name, prop ->
        def value = run_params[name]
        if (value == null || (value instanceof String && value == '' && prop.type != 'string')) {
            return
        }
        def problem = checkValue(value, prop)
        if (problem) {
            errors << "  --${name}: ${problem} (got '${value}')"
        }
    }
    if (errors) {
        error("invalid parameter(s):\n${errors.join('\n')}\nSee `nextflow run . --help`.")
    }

    def unknown = run_params.keySet().findAll { key -> !props.containsKey(toSnakeCase(key)) }
    if (unknown) {
        def lines = unknown.sort().collect { key ->
            def best = props.keySet().min { known -> levenshtein(key, known) }
            def hint = best != null && levenshtein(key, best) <= 3 ? " (did you mean --${best}?)" : ''
            "  --${key}${hint}"
        }
        log.warn("unknown parameter(s), ignored:\n${lines.join('\n')}")
    }
}

def checkValue(value, prop) {
    def type = prop.type
    if (type == 'boolean' && !(value instanceof Boolean)) {
        return 'expected true or false'
    }
    if (type == 'integer' && !(value instanceof Integer || value instanceof Long)) {
        return 'expected an integer'
    }
    if (type == 'number' && !(value instanceof Number)) {
        return 'expected a number'
    }
    if (type == 'string' && (value instanceof Boolean)) {
        return 'expected a value'
    }
    def text = value.toString()
    if (prop.enum && !(text in prop.enum)) {
        return "expected one of ${prop.enum.join(', ')}"
    }
    if (prop.pattern && !(text ==~ prop.pattern)) {
        return "does not match ${prop.pattern}"
    }
    if (value instanceof Number) {
        if (prop.minimum != null && value < prop.minimum) {
            return "expected >= ${prop.minimum}"
        }
        if (prop.maximum != null && value > prop.maximum) {
            return "expected <= ${prop.maximum}"
        }
        if (prop.exclusiveMinimum != null && value <= prop.exclusiveMinimum) {
            return "expected > ${prop.exclusiveMinimum}"
        }
    }
    return null
}

// --foo-bar and --fooBar reach params as both forms; compare them as foo_bar
def toSnakeCase(key) {
    return key.replaceAll('-', '_').replaceAll('([a-z0-9])([A-Z])', '$1_$2').toLowerCase()
}

def levenshtein(a, b) {
    def prev = (0..b.length()).toList()
    a.eachWithIndex { ca, i ->
        def cur = [i + 1]
        b.eachWithIndex { cb, j ->
            cur << [cur[j] + 1, prev[j + 1] + 1, prev[j] + (ca == cb ? 0 : 1)].min()
        }
        prev = cur
    }
    return prev[b.length()]
}

//
// Comma-separated parameter -> list (methods, seeds)
//
def parseList(value) {
    return value == null ? [] : value.toString().tokenize(', ').collect { item -> item.trim() }.findAll { item -> item }.unique()
}

//
// <outdir>/pipeline_info/params_<suffix>.json
//
def dumpParametersToJSON(run_params, outdir, report_suffix) {
    def suffix = report_suffix ?: new java.util.Date().format('yyyy-MM-dd_HH-mm-ss')
    def text   = groovy.json.JsonOutput.prettyPrint(groovy.json.JsonOutput.toJson(run_params.sort()))
    def dir    = file("${outdir}/pipeline_info")
    dir.mkdirs()
    file("${outdir}/pipeline_info/params_${suffix}.json").text = text + '\n'
}

//
// versions.yml of every task -> one YAML (process name without the workflow path)
//
def processVersionsFromYAML(yaml_file) {
    def yaml     = new org.yaml.snakeyaml.Yaml()
    def versions = yaml.load(yaml_file.text).collectEntries { name, tools -> [name.tokenize(':')[-1], tools] }
    return yaml.dumpAsMap(versions).trim()
}

def workflowVersionToYAML() {
    return """
    Workflow:
        ${pipelineName()}: ${workflow.manifest.version}
        Nextflow: ${workflow.nextflow.version}
    """.stripIndent().trim()
}

def softwareVersionsToYAML(ch_versions) {
    return ch_versions
        .unique()
        .map { version -> processVersionsFromYAML(version) }
        .unique()
        .mix(channel.of(workflowVersionToYAML()))
}

//
// versions.yml of every task -> one value: {process: {tool: version}} as one-line JSON, keys sorted
// (a value, not a file: the report and MultiQC tasks hash it by content, so -resume keeps them)
//
def softwareVersionsToJSON(ch_versions) {
    return ch_versions
        .unique()
        .map { version -> new org.yaml.snakeyaml.Yaml().load(version.text) }
        .collect()
        .map { docs ->
            def merged = new TreeMap()
            docs.each { doc ->
                doc.each { name, tools ->
                    def entry = merged.get(name.tokenize(':')[-1], new TreeMap())
                    tools.each { tool, ver -> entry[tool.toString()] = ver.toString() }
                }
            }
            merged['Workflow'] = new TreeMap([(pipelineName()): workflow.manifest.version.toString(),
                                              Nextflow: workflow.nextflow.version.toString()])
            groovy.json.JsonOutput.toJson(merged)
        }
}

//
// The run's parameters for the report's and MultiQC's run summary: one-line JSON, keys sorted, without the
// parameters that only say where results go (so a new --outdir does not re-run the reports on -resume)
//
def paramsToJSON(run_params) {
    def skip = ['outdir', 'trace_report_suffix', 'publish_dir_mode', 'help', 'show_hidden', 'version']
    def kept = new TreeMap()
    run_params.each { key, value ->
        def name = toSnakeCase(key.toString())
        if (!(name in skip) && !kept.containsKey(name)) {
            kept[name] = value instanceof CharSequence ? value.toString() : value
        }
    }
    return groovy.json.JsonOutput.toJson(kept)
}

// manifest.name is owner/repo (spatialdomains/spatialdomains); messages use the short name
def pipelineName() {
    return workflow.manifest.name.tokenize('/')[-1]
}

//
// The closing summary (called from workflow.onComplete in main.nf)
//
def completionSummary(outdir) {
    def stats = workflow.stats
    if (workflow.success) {
        log.info("-[${pipelineName()}] Pipeline completed successfully in ${workflow.duration}: " +
            "${stats.succeedCount} task(s) run, ${stats.cachedCount} cached")
        log.info("-[${pipelineName()}] Results in ${outdir}/ (files: docs/output.md); " +
            "run reports in ${outdir}/pipeline_info/")
    } else {
        // Nextflow writes its log to stdout; the cause also goes to stderr, where users and CI look
        def cause = taskErrorLines(workflow.errorReport)
        System.err.println("-[${pipelineName()}] Pipeline failed after ${workflow.duration}: " +
            "${stats.failedCount} task(s) failed, ${stats.succeedCount} succeeded, ${stats.cachedCount} cached." +
            (cause ? "\n${cause}" : (workflow.errorMessage ? "\n${workflow.errorMessage}" : '')) +
            "\nFix the cause and rerun with -resume to reuse the finished tasks.")
    }
}

// The "Command error:" section of a failed task's report (its stderr, e.g. every sample-sheet problem)
def taskErrorLines(report) {
    if (!report || !report.contains('Command error:')) {
        return ''
    }
    def section = report.substring(report.indexOf('Command error:') + 'Command error:'.length())
    if (section.contains('Work dir:')) {
        section = section.substring(0, section.indexOf('Work dir:'))
    }
    return section.readLines().collect { line -> line.replaceFirst('^  ', '') }.findAll { line -> line.trim() }.join('\n')
}
